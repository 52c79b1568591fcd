"""Early signals during SFT: does the model produce the teacher's numbers, and its verdict?

On a fixed slice of dev critiques, fed to the model as they are (teacher forcing):
- `digit_acc`: share of the critique's digit tokens the model predicts exactly (argmax); one wrong digit
  among the ~30 of a critique is what flips a free-running verdict;
- `verdict_acc`: share of critiques whose " Yes"/" No" is the argmax at the verdict position, given the
  teacher's own analysis before it.
- `cmp_acc`: share of comparison words predicted exactly: the " the" or " not" of "the same"/"not the same"
  right after each compared pair ("52 vs 51, not the same"), and `cmp_not_acc` the share of " not" among
  them (the differing pairs, the ones a weak model calls the same), also per error kind (`cmp_not_<kind>`).
- `calc_acc`: share of critiques whose calculation check's own result ("36 + 7 = 43; the Now Step writes 44")
  the model predicts whole, also per error kind (`calc_acc_<kind>`). On an arithmetic slip the step's result is
  wrong, so only there copying it fails: `calc_acc_arithmetic` says whether the model computes.
A pretrained base copies numbers at once (digit_acc is then saturated), so the comparison words and the
calculation results are what predict a free-running F1. All rise long before F1 does, so a run that will not
learn shows it in minutes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rprm_lite.training.tokens import Example

SIGNALS_FILE = "signals.jsonl"
COMPARISON = re.compile(r"[,:]( )(?:not )?the same")  # group 1: the space the comparison word starts with
CALCULATION = re.compile(r"\*\*Calculation Analysis\*\*: \d+ \S+ \d+ =( \d+);")  # group 1: the teacher's result


@dataclass(frozen=True)
class SignalExample:
    example: Example
    digit_positions: list[int]  # positions of the critique's digit tokens
    verdict_position: int  # position of the " Yes"/" No" token
    comparison_positions: tuple[int, ...] = ()  # positions of the word after each compared pair
    comparison_differs: tuple[bool, ...] = ()  # per position: the pair differs (the word is " not")
    kind: str | None = None  # the error kind of the example's problem (None: a right solution)
    calculation_positions: tuple[int, ...] = ()  # the tokens of the calculation check's own result


def signal_examples(examples: list[Example], tokenizer: Any,
                    kinds: list[str | None] | None = None) -> list[SignalExample]:
    """Where the digits, the comparison words and the verdict are in each example (the verdict is the token
    before the end marker)."""
    digits = {tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)}
    found = []
    for n, example in enumerate(examples):
        start = example.prompt_length
        positions = [i for i in range(start, len(example.ids)) if example.ids[i] in digits]
        text, starts = critique_text(example, tokenizer)
        compared, differs = comparison_words(text, starts)
        found.append(SignalExample(example, positions, len(example.ids) - 2, compared, differs,
                                   kinds[n] if kinds else None, calculation_tokens(text, starts)))
    return found


def critique_text(example: Example, tokenizer: Any) -> tuple[str, dict[int, int]]:
    """The critique's text as its tokens decode, and the token position that starts at each character offset."""
    starts: dict[int, int] = {}
    text = ""
    for position in range(example.prompt_length, len(example.ids)):
        starts[len(text)] = position
        text += tokenizer.decode([example.ids[position]])
    return text, starts


def calculation_tokens(text: str, starts: dict[int, int]) -> tuple[int, ...]:
    """The positions of the tokens that hold the calculation check's own result (every token that overlaps its
    digits); none when the critique has no such check."""
    match = CALCULATION.search(text)
    if match is None:
        return ()
    begin, end = match.start(1) + 1, match.end(1)  # the digits, after the space
    offsets = sorted(starts) + [len(text)]
    return tuple(starts[a] for a, b in zip(offsets, offsets[1:], strict=False) if a < end and b > begin)


def comparison_words(text: str, starts: dict[int, int]) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """Token positions where a comparison word starts, and whether each is " not"; a word that does not begin
    its own token (a tokenizer that merges ", the") is left out."""
    matches = [(starts.get(m.start(1)), m.group(0)[2:].startswith("not")) for m in COMPARISON.finditer(text)]
    kept = [(position, differs) for position, differs in matches if position is not None]
    return tuple(p for p, _ in kept), tuple(d for _, d in kept)


def teacher_forced_signals(model: Any, items: list[SignalExample], *, batch_size: int = 8) -> dict[str, float]:
    import torch

    from rprm_lite.training.shared_prefix import IGNORE, shared_prefix_logits

    digit_hits = digit_total = verdict_hits = 0
    compared: list[tuple[bool, bool, str | None]] = []  # (hit, differs, kind) per comparison word
    calculated: list[tuple[bool, str | None]] = []  # (hit, kind) per calculation check
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            width = max(len(item.example.ids) for item in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long, device=model.device)
            attention = torch.zeros_like(ids)
            labels = torch.full_like(ids, IGNORE)
            for row, item in enumerate(chunk):
                n = len(item.example.ids)
                ids[row, :n] = torch.tensor(item.example.ids)
                attention[row, :n] = 1
                labels[row, :n] = torch.tensor([t if m else IGNORE for t, m in
                                                zip(item.example.ids, item.example.loss_mask, strict=True)])
            logits, prefix = shared_prefix_logits(model, ids, attention, labels)
            predicted = logits.argmax(dim=-1)  # predicted[r, j] is the guess for position prefix + j + 1
            for row, item in enumerate(chunk):
                guess = predicted[row]
                hits = [int(guess[p - prefix - 1]) == item.example.ids[p] for p in item.digit_positions]
                digit_hits += sum(hits)
                digit_total += len(hits)
                v = item.verdict_position
                verdict_hits += int(guess[v - prefix - 1]) == item.example.ids[v]
                compared += [(int(guess[p - prefix - 1]) == item.example.ids[p], differs, item.kind)
                             for p, differs in zip(item.comparison_positions, item.comparison_differs, strict=True)]
                if item.calculation_positions:
                    calculated.append((all(int(guess[p - prefix - 1]) == item.example.ids[p]
                                           for p in item.calculation_positions), item.kind))
    model.train(was_training)
    return {"digit_acc": round(digit_hits / max(digit_total, 1), 4), "verdict_acc": round(verdict_hits / len(items), 4),
            **comparison_signals(compared), **calculation_signals(calculated)}


def calculation_signals(calculated: list[tuple[bool, str | None]]) -> dict[str, float]:
    """calc_acc over every calculation check, and per error kind."""
    if not calculated:
        return {}
    signals = {"calc_acc": round(sum(hit for hit, _ in calculated) / len(calculated), 4)}
    for kind in sorted({kind for _, kind in calculated if kind}):
        hits = [hit for hit, k in calculated if k == kind]
        signals[f"calc_acc_{kind}"] = round(sum(hits) / len(hits), 4)
    return signals


def comparison_signals(compared: list[tuple[bool, bool, str | None]]) -> dict[str, float]:
    """cmp_acc over every comparison word, cmp_not_acc over the differing pairs, and that per error kind."""
    if not compared:
        return {}
    signals = {"cmp_acc": round(sum(hit for hit, _, _ in compared) / len(compared), 4)}
    differing = [(hit, kind) for hit, differs, kind in compared if differs]
    if differing:
        signals["cmp_not_acc"] = round(sum(hit for hit, _ in differing) / len(differing), 4)
    for kind in sorted({kind for _, kind in differing if kind}):
        hits = [hit for hit, k in differing if k == kind]
        signals[f"cmp_not_{kind}"] = round(sum(hits) / len(hits), 4)
    return signals


class SignalsCallback(TrainerCallback):
    """Every `every` optimizer steps: the teacher-forced signals, and `extra(model, step)` at chosen steps."""

    def __init__(self, items: list[SignalExample], out: str, *, every: int,
                 extra: Callable[[Any, int], dict[str, Any]] | None = None, extra_every: int = 0,
                 log: Callable[[str], None] = print) -> None:
        self.items = items
        self.path = Path(out) / SIGNALS_FILE
        self.every = every
        self.extra = extra
        self.extra_every = extra_every
        self.log = log
        self.history: list[dict[str, Any]] = []
        self._start = time.perf_counter()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._start = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.record(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.record(model, state.global_step)

    def record(self, model: Any, step: int) -> None:
        entry: dict[str, Any] = {"step": step, "elapsed_s": round(time.perf_counter() - self._start, 1)}
        entry |= teacher_forced_signals(model, self.items)
        if self.extra is not None and self.extra_every and step and step % self.extra_every == 0:
            entry |= self.extra(model, step)
        self.history.append(entry)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        self.log("  signals " + ", ".join(f"{k} {v}" for k, v in entry.items()))
