"""Settings of `rprm-lite train sft` and `rprm-lite train dpo`: one frozen dataclass per command.

Defaults follow the R-PRM paper (SFT: learning rate 5e-6, batch 128, 1 epoch, cosine with warmup;
DPO: learning rate 5e-7, batch 128, 1 epoch). `batch_size` is the effective batch; each device
takes `micro_batch_size` examples per forward pass and gradients accumulate up to `batch_size`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rprm_lite.config import PROMPT_STYLES
from rprm_lite.training.jobconfig import JobConfig, option

PRECISIONS = ("auto", "bf16", "fp32")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(JobConfig):
    """Options shared by SFT and DPO."""

    model: str = option(help="Hugging Face checkpoint folder (or hub id) to start from.")
    data: str = option(help="Training data JSONL.")
    out: str = option(help="Output folder: the trained checkpoint (safetensors, config, tokenizer).")
    prompt_style: str = option("chatml", help="Prompt style to train on (chatml is how R-PRM was trained).")
    learning_rate: float = option(5e-6, help="Peak learning rate.")
    batch_size: int = option(128, help="Effective batch size (examples per optimizer step, all devices).")
    micro_batch_size: int = option(4, help="Examples per forward pass on one device.")
    epochs: float = option(1.0, help="Passes over the data.")
    max_steps: int = option(-1, help="Stop after this many optimizer steps (-1: as many as the epochs take).")
    warmup_ratio: float = option(0.1, help="Share of the steps spent warming up the learning rate.")
    lr_scheduler: str = option("cosine", help="Learning-rate schedule: " + ", ".join(SCHEDULERS) + ".")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    max_length: int = option(8192, help="Longest example in tokens; longer ones are skipped and counted.")
    lora: bool = option(False, help="Train LoRA adapters instead of every weight (merged on export).")
    lora_r: int = option(16, help="LoRA rank.")
    lora_alpha: int = option(32, help="LoRA alpha.")
    lora_dropout: float = option(0.05, help="LoRA dropout.")
    lora_targets: str = option("all-linear", help="Modules to adapt: all-linear or comma-separated names.")
    precision: str = option("auto", help="auto (bf16 on a GPU that has it, else fp32), bf16 or fp32.")
    gradient_checkpointing: bool = option(False, help="Recompute activations in the backward pass to save memory.")
    seed: int = option(0, help="Seed for initialisation, data order and dropout.")
    logging_steps: int = option(10, help="Log loss and tokens/s every N steps (train_log.jsonl in --out).")
    save_steps: int = option(0, help="Also save a checkpoint every N steps (0: only the final model).")
    tensorboard: bool = option(False, help="Also write TensorBoard logs (needs the tensorboard package).")

    def problems(self) -> Iterator[str]:
        yield from self.at_least(batch_size=1, micro_batch_size=1, max_length=16, lora_r=1,
                                 logging_steps=1, save_steps=0)
        if self.learning_rate <= 0:
            yield f"learning-rate must be > 0, got {self.learning_rate}"
        if self.epochs <= 0 and self.max_steps <= 0:
            yield "set epochs > 0 or max-steps > 0"
        if not 0 <= self.warmup_ratio < 1:
            yield f"warmup-ratio must be in [0, 1), got {self.warmup_ratio}"
        yield from self.one_of("prompt_style", PROMPT_STYLES)
        yield from self.one_of("precision", PRECISIONS)
        yield from self.one_of("lr_scheduler", SCHEDULERS)


@dataclass(frozen=True, kw_only=True)
class SFTRunConfig(TrainConfig):
    """`rprm-lite train sft`: learn to write critiques; the loss covers the critique and its end marker."""

    data: str = option(help="Seed critiques JSONL written by `rprm-lite data seed`.")
    shared_prefix: bool = option(True, help="Run the prompt prefix common to a micro-batch once (same loss, faster).")
    init_adapter: str = option("", help="With --lora: start from this peft adapter folder (for example the demo "
                                        "recipe's arithmetic drill) instead of a fresh LoRA.")

    def problems(self) -> Iterator[str]:
        yield from super().problems()
        if self.init_adapter and not self.lora:
            yield "init-adapter needs --lora: it is a LoRA to continue"


@dataclass(frozen=True, kw_only=True)
class DPORunConfig(TrainConfig):
    """`rprm-lite train dpo`: prefer critiques that agree with the label, against a frozen reference."""

    model: str = option(help="The SFT checkpoint folder to improve.")
    data: str = option(help="Preference pairs JSONL written by `rprm-lite data pairs`.")
    ref_model: str = option("", help="Reference checkpoint (default: --model, frozen). Ignored with --lora.")
    learning_rate: float = option(5e-7, help="Peak learning rate.")
    micro_batch_size: int = option(2, help="Pairs per forward pass on one device (each is two sequences).")
    beta: float = option(0.1, help="DPO beta: how far the policy may move from the reference.")

    def problems(self) -> Iterator[str]:
        yield from super().problems()
        if self.beta <= 0:
            yield f"beta must be > 0, got {self.beta}"

