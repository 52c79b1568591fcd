"""Arithmetic drill: short lines ("54 + 39 = 93") that teach a pretrained base the synthetic problems' arithmetic
before it learns to write critiques (the demo recipe's `--drill-steps`).

Why: a critique's calculation check ("36 + 7 = 43; the Now Step writes 44: 43 vs 44, not the same") is written a
few lines below the step's own "36 + 7 = 44". A model that cannot add copies the step's result instead, and the
copy is right on every step except an arithmetic slip: the shipped adapter wrote "36 + 7 = 44 ... 44 vs 44, the
same" and missed about half the slips. SmolLM2-135M-Instruct gets 17-64% of these facts right on its own
(subtraction worst); 150 LoRA steps of drill (about 9 minutes on 2 CPU cores) lift them to 77-92%, teacher-forced
on held-out facts. The drill trains the LoRA that SFT then continues (`SFTRunConfig.init_adapter`).

Measured (rprm_lite/models/MODEL_CARD.md): the gain does not survive SFT. On arithmetic slips the drilled
model's teacher-forced calculation result fell from 62% right after the drill to 46% after SFT, as SFT relearned
the copy, and free-running it caught 7 of 20 slips against the undrilled adapter's 11. So the recipe leaves it off.

The facts are the problems' own expressions with their true results, written as the teacher writes them, so
what the drill teaches is exactly what a calculation check needs. Several facts are packed into one sequence,
separated by newlines; the loss covers each fact's result and nothing else.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rprm_lite.demo_model.synthetic_problems import SYMBOLS, Problem, apply
from rprm_lite.training.shared_prefix import IGNORE


@dataclass(frozen=True)
class Fact:
    question: str  # "36 + 7 ="
    answer: str  # " 43"
    op: str  # "+", "-", "*" or "/"


@dataclass(frozen=True)
class DrillConfig:
    steps: int = 150
    learning_rate: float = 1e-3
    facts_per_sequence: int = 24
    batch_size: int = 4  # sequences per optimizer step
    lora_r: int = 16
    lora_alpha: int = 32
    seed: int = 0
    precision: str = "fp32"  # bf16: autocast (where the device computes bf16 natively), fp32 weights
    device: str = "cpu"


def facts(problems: Iterable[Problem]) -> list[Fact]:
    """Every step's expression with its true result (a step whose expression has none is skipped), in order."""
    found = []
    for problem in problems:
        for step in problem.steps:
            result = apply(step.op, step.left, step.right)
            if result is not None:
                found.append(Fact(f"{step.left} {SYMBOLS[step.op]} {step.right} =", f" {result}", step.op))
    return found


def pack(chunk: Sequence[Fact], tokenizer: Any) -> tuple[list[int], list[int], list[tuple[int, int, str]]]:
    """Token ids of the facts one per line, their labels (the results only), and each result's (start, end, op)
    in the ids."""
    ids: list[int] = []
    labels: list[int] = []
    answers = []
    for fact in chunk:
        question = tokenizer(("\n" if ids else "") + fact.question, add_special_tokens=False)["input_ids"]
        answer = tokenizer(fact.answer, add_special_tokens=False)["input_ids"]
        ids += question
        labels += [IGNORE] * len(question)
        answers.append((len(ids), len(ids) + len(answer), fact.op))
        ids += answer
        labels += answer
    return ids, labels, answers


def accuracy(model: Any, tokenizer: Any, held: Sequence[Fact], *, per_sequence: int = 24,
             precision: str = "fp32") -> dict[str, float]:
    """Per operation, the percentage of facts whose whole result the model predicts (teacher-forced argmax)."""
    import torch

    hits: dict[str, list[bool]] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad(), _autocast(precision, model.device):
        for start in range(0, len(held), per_sequence):
            ids, _, answers = pack(held[start:start + per_sequence], tokenizer)
            guess = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].argmax(-1).tolist()
            for begin, end, op in answers:
                hits.setdefault(op, []).append(guess[begin - 1:end - 1] == ids[begin:end])
    model.train(was_training)
    return {SYMBOLS[op]: round(100 * sum(v) / len(v), 1) for op, v in sorted(hits.items())}


def train_drill(model: Any, tokenizer: Any, train: Sequence[Fact], held: Sequence[Fact], out: Path,
                config: DrillConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Trains a LoRA on every linear layer of `model` (a causal LM) on `train`, saves the peft adapter in `out`
    and returns what it measured on `held` before and after."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    model = get_peft_model(model.to(config.device), LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules="all-linear",
        task_type="CAUSAL_LM"))
    order = list(train)
    random.Random(f"drill:{config.seed}").shuffle(order)
    before = accuracy(model, tokenizer, held, per_sequence=config.facts_per_sequence, precision=config.precision)
    log(f"  drill: {len(order)} facts; held-out accuracy before: {_percentages(before)}")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    per_step = config.facts_per_sequence * config.batch_size
    started = time.perf_counter()
    model.train()
    losses: list[float] = []
    for step in range(config.steps):
        sequences = [pack(_cycle(order, (step * config.batch_size + b) * config.facts_per_sequence,
                                 config.facts_per_sequence), tokenizer)[:2] for b in range(config.batch_size)]
        width = max(len(ids) for ids, _ in sequences)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s, _ in sequences], device=config.device)
        labels = torch.tensor([y + [IGNORE] * (width - len(y)) for _, y in sequences], device=config.device)
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in sequences], device=config.device)
        with _autocast(config.precision, config.device):
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if (step + 1) % 25 == 0 or step + 1 == config.steps:
            log(f"  drill step {step + 1}/{config.steps}: loss {losses[-1]:.3f}, "
                f"{time.perf_counter() - started:.0f} s")
    after = accuracy(model, tokenizer, held, per_sequence=config.facts_per_sequence, precision=config.precision)
    log(f"  drill: held-out accuracy after: {_percentages(after)}")
    model.save_pretrained(out)
    return {"steps": config.steps, "facts_seen": config.steps * per_step, "distinct_facts": len(order),
            "held_out_facts": len(held), "accuracy_before": before, "accuracy_after": after,
            "first_loss": round(losses[0], 4) if losses else None,
            "last_loss": round(losses[-1], 4) if losses else None,
            "train_seconds": round(time.perf_counter() - started, 1)}


def _cycle(items: Sequence[Fact], start: int, n: int) -> list[Fact]:
    return [items[(start + i) % len(items)] for i in range(n)]


def _autocast(precision: str, device: Any) -> Any:
    import contextlib

    import torch

    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def _percentages(accuracies: dict[str, float]) -> str:
    return ", ".join(f"{op} {value}%" for op, value in accuracies.items())
