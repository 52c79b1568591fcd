"""Curriculum before the long R-PRM prompt: an arithmetic drill, then the critiques without the instructions.

1. Drill: short "a op b = c" lines.

A critique checks a step by computing it ("72 - 36 = 36, and the Now Step writes 36, which matches"), so
one wrong digit flips a verdict. Learning the facts inside full prompts costs about 300 tokens per fact;
here a fact costs about 12, written exactly as the teacher writes its calculations. The loss covers the
result digits and the line end only (the operands are random: nothing to learn there).

The facts cover what the synthetic problems compute: sums and differences of numbers up to 120,
products of numbers up to 12, and exact quotients with a divisor up to 9 and a dividend up to 120.

2. Short prompts: the SFT examples themselves with the fixed instruction text cut off (every token after
the prefix all examples share, which ends with "Question:"; the rest byte for byte as in the released
prompt). A small model learns to find and copy numbers faster when 440 tokens of instructions do not
compete for its attention (the early signals of SFT on the long prompt alone: teacher-forced digit
accuracy near 30% after 600 steps); SFT on the full released prompt follows, so the shipped model reads
exactly the released input format.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rprm_lite.training.synthetic_problems import SYMBOLS
from rprm_lite.training.tokens import Example


@dataclass(frozen=True)
class DrillConfig:
    model: str  # a Hugging Face checkpoint folder (with its tokenizer)
    out: str
    steps: int = 300
    batch_size: int = 64
    row_tokens: int = 128
    learning_rate: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False  # autocast (fp32 master weights)


def fact(rng: random.Random) -> tuple[str, str]:
    """One random fact as (question, answer): ("72 - 36 =", " 36")."""
    op = rng.choice("+-*/")
    if op == "+":
        left, right = rng.randint(0, 120), rng.randint(0, 99)
        result = left + right
    elif op == "-":
        left = rng.randint(1, 120)
        right = rng.randint(0, left)
        result = left - right
    elif op == "*":
        left, right = rng.randint(1, 12), rng.randint(1, 12)
        left, right = (left, right) if rng.random() < 0.5 else (right, left)
        result = left * right
    else:
        right = rng.randint(2, 9)
        result = rng.randint(1, 120 // right)
        left = result * right
    return f"{left} {SYMBOLS[op]} {right} =", f" {result}"


def drill_rows(tokenizer: Any, *, rows: int, row_tokens: int,
               rng: random.Random) -> Iterator[tuple[list[int], list[int]]]:
    """Rows of packed facts, one per line: (ids, loss mask), the mask on each answer and its newline."""
    for _ in range(rows):
        ids: list[int] = []
        mask: list[int] = []
        while True:
            question, answer = fact(rng)
            q = tokenizer.plain(question)
            a = tokenizer.plain(answer + "\n")
            if len(ids) + len(q) + len(a) > row_tokens:
                break
            ids += q + a
            mask += [0] * len(q) + [1] * len(a)
        yield ids, mask


def train_drill(config: DrillConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `config.model` on the drill for `config.steps` steps and save it (and its tokenizer) to `out`."""
    from rprm_lite.training.checkpoint import load_tokenizer
    from rprm_lite.training.tokens import PromptTokenizer

    encoder = PromptTokenizer(load_tokenizer(config.model))
    rng = random.Random(f"drill:{config.seed}")
    batches = (list(drill_rows(encoder, rows=config.batch_size, row_tokens=config.row_tokens, rng=rng))
               for _ in range(config.steps))
    return train_rows(config, batches, name="drill", log=log)


def short_prompt_rows(examples: list[Example]) -> list[tuple[list[int], list[int]]]:
    """The examples without the token prefix they all share (the instructions before "Question:")."""
    first = examples[0].ids
    shared = min(next((i for i, (a, b) in enumerate(zip(first, e.ids, strict=False)) if a != b), len(e.ids))
                 for e in examples)
    shared = min(shared, min(e.prompt_length for e in examples) - 1)
    return [(e.ids[shared:], e.loss_mask[shared:]) for e in examples]


def train_short_prompts(config: DrillConfig, examples: list[Example], *,
                        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train on `examples` cut to their short form, in a seeded shuffled order, `config.steps` batches."""
    rows = short_prompt_rows(examples)
    rng = random.Random(f"short-prompts:{config.seed}")

    def batches() -> Iterator[list[tuple[list[int], list[int]]]]:
        order: list[int] = []
        for _ in range(config.steps):
            if len(order) < config.batch_size:
                fresh = list(range(len(rows)))
                rng.shuffle(fresh)
                order += fresh
            yield [rows[i] for i in order[:config.batch_size]]
            del order[:config.batch_size]

    return train_rows(config, batches(), name="short-prompt", log=log) | {"examples": len(rows),
                                                                         "tokens_per_example": round(
        sum(len(ids) for ids, _ in rows) / len(rows))}


def train_rows(config: DrillConfig, batches: Iterator[list[tuple[list[int], list[int]]]], *, name: str,
               log: Callable[[str], None]) -> dict[str, Any]:
    """AdamW with warm-up and cosine decay over `config.steps` batches of (ids, mask) rows; saves to `out`."""
    import torch

    from rprm_lite.training.checkpoint import export_model, load_causal_lm, load_tokenizer
    from rprm_lite.training.shared_prefix import causal_lm_loss

    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.model)
    model = load_causal_lm(config.model).to(config.device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(s, config.steps) / config.steps))))
    started, history = time.perf_counter(), []
    for step, rows in enumerate(batches):
        ids, labels = batch_tensors(rows, pad_id=tokenizer.pad_token_id or 0)
        ids, labels = ids.to(config.device), labels.to(config.device)
        with torch.autocast(config.device.split(":")[0], dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(input_ids=ids)  # right padding: no real token attends to a pad (causal), pads have no loss
        loss = causal_lm_loss(logits.logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == config.steps - 1:
            accuracy = answer_accuracy(logits.logits.detach(), labels)
            history.append({"step": step, "loss": round(loss.item(), 4), "token_acc": round(accuracy, 4),
                            "elapsed_s": round(time.perf_counter() - started, 1)})
            log(f"  {name} step {step}: loss {loss.item():.3f}, supervised-token accuracy {accuracy:.3f}")
    out = Path(config.out)
    export_model(model, tokenizer, str(out), dtype=torch.float32)
    (out / f"{name}_log.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    return {"steps": config.steps, "final_loss": history[-1]["loss"], "token_acc": history[-1]["token_acc"]}


def batch_tensors(rows: list[tuple[list[int], list[int]]], *, pad_id: int) -> tuple[Any, Any]:
    import torch

    from rprm_lite.training.shared_prefix import IGNORE

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for row, (row_ids, mask) in enumerate(rows):
        ids[row, :len(row_ids)] = torch.tensor(row_ids)
        labels[row, :len(row_ids)] = torch.tensor([t if m else IGNORE for t, m in zip(row_ids, mask, strict=True)])
    return ids, labels


def answer_accuracy(logits: Any, labels: Any) -> float:
    """Share of supervised tokens whose argmax prediction is right."""
    from rprm_lite.training.shared_prefix import IGNORE

    predicted = logits[:, :-1].argmax(dim=-1)
    targets = labels[:, 1:]
    supervised = targets != IGNORE
    return float((predicted[supervised] == targets[supervised]).float().mean())
