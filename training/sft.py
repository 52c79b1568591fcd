"""`rprm-lite train sft`: supervised fine-tuning on teacher critiques, with TRL's SFTTrainer.

Examples are tokenized here, not by TRL: TRL would tokenize the prompt as one string and parse
special tokens inside user text. The dataset handed to SFTTrainer is already (input_ids,
completion_mask), and `completion_only_loss` makes the loss cover exactly the masked tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rprm_lite.prompt import render
from rprm_lite.training.checkpoint import load_causal_lm
from rprm_lite.training.data_files import CritiqueRecord, read_critiques
from rprm_lite.training.errors import TrainingError
from rprm_lite.training.tokens import Example, PromptTokenizer
from rprm_lite.training.train_config import SFTRunConfig
from rprm_lite.training.trainer_setup import TrainSummary, prepare_examples, run_and_export, trainer_arguments


def sft_examples(records: list[CritiqueRecord], encoder: PromptTokenizer, *, prompt_style: str,
                 max_length: int) -> tuple[list[Example], int]:
    """Token ids and loss masks of every record; the second value counts records over `max_length`."""
    examples = [encoder.example(render(r.solution, r.index, prompt_style), r.critique) for r in records]
    kept = [e for e in examples if len(e.ids) <= max_length]
    return kept, len(examples) - len(kept)


def build_sft_trainer(config: SFTRunConfig, *, callbacks: Sequence[Any] = (),
                      read_records: Callable[[], list[Any]] | None = None,
                      to_examples: Callable[..., tuple[list[Example], int]] = sft_examples,
                      ) -> tuple[Any, Any, TrainSummary]:
    """The SFTTrainer for a run, its tokenizer, and the summary it will fill in. The examples are the critiques
    of `config.data`, unless `read_records` and `to_examples` make others (the demo policy's solutions)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    # `data seed` appends critiques as they arrive; a fixed order makes the run repeatable
    tokenizer, examples, summary = prepare_examples(
        config, read_records or (lambda: sorted(read_critiques(config.data), key=lambda record: record.key)),
        to_examples, noun="examples")
    arguments = trainer_arguments(SFTConfig, config, "sft", summary, callbacks, completion_only_loss=True,
                                  dataset_num_proc=None)
    model = load_causal_lm(config.model)
    if config.init_adapter:
        model = continued_lora(model, config.init_adapter)
        arguments["peft_config"] = None  # the model is a trainable PeftModel already
    trainer = (shared_prefix_sft_trainer() if config.shared_prefix else SFTTrainer)(
        model=model,
        train_dataset=Dataset.from_list([{"input_ids": e.ids, "completion_mask": e.loss_mask} for e in examples]),
        processing_class=tokenizer,
        **arguments,
    )
    return trainer, tokenizer, summary


def continued_lora(model: Any, folder: str) -> Any:
    """`model` with the peft adapter in `folder`, trainable."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, folder, is_trainable=True)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{folder}: cannot load it as a peft LoRA adapter of {type(model).__name__} "
                            f"({exc})") from None


def shared_prefix_sft_trainer() -> type:
    """SFTTrainer whose training loss runs each micro-batch's common prompt prefix once (`shared_prefix`)."""
    from trl import SFTTrainer

    from rprm_lite.training.shared_prefix import shared_prefix_loss

    class SharedPrefixSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not model.training:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, _ = shared_prefix_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"],
                                         num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as SFTTrainer: DDP averages the gradients
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens  # SFTTrainer's count of every token, for the logged tokens/s
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return loss

    return SharedPrefixSFTTrainer


def train_sft(config: SFTRunConfig, *, callbacks: Sequence[Any] = (), **examples: Any) -> TrainSummary:
    """Train and export; `examples` are build_sft_trainer's `read_records` and `to_examples`."""
    trainer, tokenizer, summary = build_sft_trainer(config, callbacks=callbacks, **examples)
    return run_and_export(trainer, tokenizer, config, "sft", summary, base_model=config.model)


def critique_loss(model: Any, examples: list[Example]) -> float:
    """Mean cross-entropy per supervised token (critique and end marker) over `examples`."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for example in examples:
            ids = torch.tensor([example.ids], device=model.device)
            labels = ids.masked_fill(torch.tensor([example.loss_mask], device=model.device) == 0, -100)
            logits = model(input_ids=ids).logits[0, :-1].float()
            targets = labels[0, 1:]
            total += torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum").item()
            count += int((targets != -100).sum())
    return total / count
