"""`rprm-lite train dpo`: direct preference optimisation on critique pairs, with TRL's DPOTrainer.

Pairs are tokenized here, as for SFT: TRL's own preparation would tokenize prompt + completion as
one string and parse special tokens inside user text, so `_prepare_dataset` is bypassed for our
already-tokenized (prompt_ids, chosen_ids, rejected_ids). The reference is the SFT checkpoint,
loaded a second time and frozen; with LoRA it is the base model with the adapters disabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.prompt import render
from rprm_lite.training.checkpoint import load_causal_lm
from rprm_lite.training.data_files import PairRecord, read_pairs
from rprm_lite.training.errors import TrainingError
from rprm_lite.training.tokens import PromptTokenizer
from rprm_lite.training.train_config import DPORunConfig
from rprm_lite.training.trainer_setup import TrainSummary, prepare_examples, run_and_export, trainer_arguments

PairIds = dict[str, list[int]]  # prompt_ids, chosen_ids, rejected_ids


def dpo_examples(records: list[PairRecord], encoder: PromptTokenizer, *, prompt_style: str,
                 max_length: int) -> tuple[list[PairIds], int]:
    """prompt/chosen/rejected ids of every pair; the second value counts pairs over `max_length`."""
    examples = []
    for record in records:
        if record.prompt_style not in (None, prompt_style):
            raise InputError(f"the pairs were sampled with prompt style {record.prompt_style!r} but "
                             f"--prompt-style is {prompt_style!r}; train with the style the critiques answer")
        prompt_ids = encoder.prompt_ids(render(record.solution, record.index, prompt_style))
        example = {"prompt_ids": prompt_ids, "chosen_ids": encoder.completion_ids(record.chosen),
                   "rejected_ids": encoder.completion_ids(record.rejected)}
        if len(prompt_ids) + max(len(example["chosen_ids"]), len(example["rejected_ids"])) <= max_length:
            examples.append(example)
    return examples, len(records) - len(examples)


def build_dpo_trainer(config: DPORunConfig, *, callbacks: Sequence[Any] = ()) -> tuple[Any, Any, TrainSummary]:
    """The DPOTrainer for a run, its tokenizer, and the summary it will fill in."""
    from datasets import Dataset
    from trl import DPOConfig

    tokenizer, examples, summary = prepare_examples(config, lambda: read_pairs(config.data), dpo_examples,
                                                    noun="pairs")
    trainer = pretokenized_dpo_trainer()(
        model=load_causal_lm(config.model),
        ref_model=None if config.lora else load_causal_lm(config.ref_model or config.model),
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        **trainer_arguments(DPOConfig, config, "dpo", summary, callbacks, beta=config.beta, dataset_num_proc=None),
    )
    return trainer, tokenizer, summary


def train_dpo(config: DPORunConfig, *, callbacks: Sequence[Any] = ()) -> TrainSummary:
    trainer, tokenizer, summary = build_dpo_trainer(config, callbacks=callbacks)
    return run_and_export(trainer, tokenizer, config, "dpo", summary, base_model=config.model,
                          ref_model=config.ref_model or config.model)


def pretokenized_dpo_trainer() -> type:
    """DPOTrainer that takes our tokenized pairs as they are (TRL is imported only when training)."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            missing = {"prompt_ids", "chosen_ids", "rejected_ids"} - set(dataset.column_names)
            if missing:
                raise TrainingError(f"the {dataset_name} dataset lacks {', '.join(sorted(missing))}")
            return dataset

    return PretokenizedDPOTrainer


def completion_logprobs(model: Any, sequences: list[tuple[list[int], list[int]]], *,
                        batch_size: int = 8) -> list[float]:
    """log P(completion | prompt) under `model`, summed over each completion's tokens."""
    import torch

    results: list[float] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        width = max(len(prompt) + len(completion) for prompt, completion in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long, device=model.device)
        attention = torch.zeros_like(ids)
        completion_mask = torch.zeros_like(ids, dtype=torch.bool)
        for row, (prompt, completion) in enumerate(chunk):
            n = len(prompt) + len(completion)
            ids[row, :n] = torch.tensor(prompt + completion)
            attention[row, :n] = 1
            completion_mask[row, len(prompt):n] = True
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        token_logps = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None]).squeeze(-1)
        results += (token_logps * completion_mask[:, 1:]).sum(dim=1).tolist()
    return results


def reward_margins(policy: Any, reference: Any, examples: list[PairIds], *, beta: float) -> list[float]:
    """DPO's implicit reward of chosen minus that of rejected, per pair (0 while policy == reference)."""
    sequences = [(ex["prompt_ids"], ex[key]) for ex in examples for key in ("chosen_ids", "rejected_ids")]
    policy.eval()
    reference.eval()
    log_ratios = [p - r for p, r in zip(completion_logprobs(policy, sequences),
                                        completion_logprobs(reference, sequences), strict=True)]
    return [beta * (chosen - rejected) for chosen, rejected in zip(log_ratios[::2], log_ratios[1::2], strict=True)]
