"""What SFT and DPO runs share: TRL arguments from our config, LoRA, logging, saving, OOM messages."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rprm_lite.training.checkpoint import (
    check_causal_lm,
    export_model,
    load_tokenizer,
    set_generation_ends,
    training_metadata,
    write_metadata,
)
from rprm_lite.training.errors import TrainingError
from rprm_lite.training.train_config import TrainConfig

LOG_FILE = "train_log.jsonl"
ADAPTER_FOLDER = "adapter"  # with --lora, the peft adapter itself is kept in OUT/adapter beside the merged model


@dataclass
class TrainSummary:
    out: str
    examples: int
    skipped_too_long: int
    steps: int = 0
    final_loss: float | None = None
    tokens_per_second: float | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "log"}


def prepare_examples(config: TrainConfig, read_records: Callable[[], list[Any]], to_examples: Callable[..., Any],
                     *, noun: str) -> tuple[Any, list[Any], TrainSummary]:
    """What an SFT or DPO run starts with: the model folder checked, its records read (`read_records`) and
    tokenized (`to_examples`, records over --max-length skipped), and the summary the run will fill in."""
    from rprm_lite.training.tokens import PromptTokenizer

    check_causal_lm(config.model)
    records = read_records()
    tokenizer = load_tokenizer(config.model)
    examples, too_long = to_examples(records, PromptTokenizer(tokenizer), prompt_style=config.prompt_style,
                                     max_length=config.max_length)
    if not examples:
        raise TrainingError(f"all {too_long} {noun} are longer than --max-length {config.max_length} tokens")
    return tokenizer, examples, TrainSummary(out=config.out, examples=len(examples), skipped_too_long=too_long)


def trainer_arguments(trl_config_class: type, config: TrainConfig, command: str, summary: TrainSummary,
                      callbacks: Sequence[Any], **specific: Any) -> dict[str, Any]:
    """The keyword arguments every TRL trainer of ours takes from the run: TRL's config (`specific` added to
    it), LoRA, and the callbacks every run has (the JSONL log, metadata in each checkpoint), then the caller's."""
    return {"args": trl_arguments(trl_config_class, config, **specific), "peft_config": lora_config(config),
            "callbacks": [JsonlLog(config.out, summary),
                          MetadataOnSave(training_metadata(command, config, base_model=config.model)), *callbacks]}


def resolve_precision(config: TrainConfig) -> str:
    return concrete_precision(config.precision)


def concrete_precision(precision: str) -> str:
    """bf16 or fp32: `auto` is bf16 on a GPU that has it, else fp32."""
    import torch

    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_steps(config: TrainConfig) -> int:
    per_step = config.micro_batch_size * world_size()
    if config.batch_size % per_step:
        raise TrainingError(f"batch-size {config.batch_size} is not a multiple of micro-batch-size "
                            f"{config.micro_batch_size} x {world_size()} device(s); pick sizes that divide evenly")
    return config.batch_size // per_step


def trl_arguments(trl_config_class: type, config: TrainConfig, **specific: Any) -> Any:
    """TRL's config for a run, every training setting taken from ours."""
    import dataclasses

    import torch

    precision = resolve_precision(config)
    # transformers renamed gradient_checkpointing to activation_checkpointing (5.2x); take what exists
    names = {f.name for f in dataclasses.fields(trl_config_class)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    specific[checkpointing] = config.gradient_checkpointing
    return trl_config_class(
        output_dir=config.out,
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=accumulation_steps(config),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay,
        bf16=precision == "bf16",
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to=["tensorboard"] if config.tensorboard else "none",
        use_cpu=not torch.cuda.is_available(),
        max_length=None,  # examples over --max-length were already skipped, never truncated
        **specific,
    )


def lora_config(config: TrainConfig) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig

    targets = config.lora_targets
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
                      task_type="CAUSAL_LM")


class JsonlLog(TrainerCallback):
    """Adds tokens/s to each log (so the progress bar shows it) and appends the log to train_log.jsonl."""

    def __init__(self, out: str, summary: TrainSummary) -> None:
        self.path = Path(out) / LOG_FILE
        self.summary = summary
        self._last: tuple[float, float] | None = None
        self._start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._last = (self._start, 0.0)
        if state.is_world_process_zero:
            self.path.unlink(missing_ok=True)  # a new run starts a new log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not state.is_world_process_zero:
            return
        now = time.perf_counter()
        tokens = logs.get("num_tokens")
        if tokens is not None and self._last is not None and now > self._last[0]:
            logs["tokens_per_second"] = round((tokens - self._last[1]) / (now - self._last[0]), 1)
            self._last = (now, tokens)
        record = {"step": state.global_step, "elapsed_s": round(now - self._start, 3),
                  **{k: _plain(v) for k, v in logs.items()}}
        self.summary.log.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


class MetadataOnSave(TrainerCallback):
    """Writes rprm_training.json into every intermediate checkpoint folder too."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_metadata(Path(args.output_dir) / f"checkpoint-{state.global_step}", self.metadata)


def run_and_export(trainer: Any, tokenizer: Any, config: TrainConfig, command: str,
                   summary: TrainSummary, **metadata: Any) -> TrainSummary:
    """Train, then save the merged model, its tokenizer and the metadata into `config.out`."""
    import torch

    sharded = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    if sharded and config.lora:
        raise TrainingError("--lora is merged into the model on export, which needs whole weights; under FSDP or "
                            "DeepSpeed they are sharded: use data parallel (training/accelerate/ddp.yaml) for LoRA")
    try:
        trainer.train()
    except torch.OutOfMemoryError:
        raise TrainingError(
            f"out of memory on the GPU with micro-batch-size {config.micro_batch_size} and examples up to "
            f"{config.max_length} tokens; try --gradient-checkpointing, --lora, a smaller --micro-batch-size "
            "(--batch-size is kept by gradient accumulation) or a smaller --max-length") from None
    state = trainer.state
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    rates = [entry["tokens_per_second"] for entry in summary.log if "tokens_per_second" in entry]
    summary.steps = state.global_step
    summary.final_loss = losses[-1] if losses else None
    summary.tokens_per_second = rates[-1] if rates else None
    if sharded:
        set_generation_ends(trainer.accelerator.unwrap_model(trainer.model), tokenizer)
        trainer.save_model(config.out)  # every process takes part: the full weights are gathered to rank 0
    if trainer.is_world_process_zero():
        if sharded:
            tokenizer.save_pretrained(config.out)
        else:
            dtype = torch.bfloat16 if resolve_precision(config) == "bf16" else torch.float32
            model = trainer.accelerator.unwrap_model(trainer.model)
            if config.lora:  # before the merge below folds it into the weights
                model.save_pretrained(Path(config.out) / ADAPTER_FOLDER)
            export_model(model, tokenizer, config.out, dtype=dtype)
        write_metadata(config.out, training_metadata(command, config, result=summary.to_dict(), **metadata))
    return summary


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
