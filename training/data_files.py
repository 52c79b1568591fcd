"""Reading the training data files: seed critiques (for SFT) and sampled steps with pairs (for DPO).

Both are JSONL. Every line carries its solution (`question`, `steps`) and the 1-based `step` it
critiques, so each line can be rendered into a prompt on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.jsonl import read_jsonl
from rprm_lite.solution import Solution, solution_from_dict


@dataclass(frozen=True)
class CritiqueRecord:
    """One SFT example: the prompt for step `index` of `solution`, and the critique to learn."""

    solution: Solution
    index: int  # 0-based
    critique: str
    sample: int = 0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.solution.id, self.index, self.sample)


@dataclass(frozen=True)
class PairRecord:
    """One DPO example: two critiques of the same step, the chosen one agreeing with its label."""

    solution: Solution
    index: int
    chosen: str
    rejected: str
    prompt_style: str | None


def read_critiques(path: str | Path) -> list[CritiqueRecord]:
    records = []
    for number, item in read_jsonl(path):
        where = f"{path} line {number}"
        solution, index = _step_of(item, where)
        sample = item.get("sample", 0)
        records.append(CritiqueRecord(solution, index, _text(item, "critique", where),
                                      sample if isinstance(sample, int) else 0))
    if not records:
        raise InputError(f"{path}: no critiques; run `rprm-lite data seed` to make some")
    return records


def read_pairs(path: str | Path) -> list[PairRecord]:
    records = []
    for number, item in read_jsonl(path):
        where = f"{path} line {number}"
        solution, index = _step_of(item, where)
        samples = item.get("samples")
        pairs = item.get("pairs")
        if not isinstance(samples, list) or not isinstance(pairs, list):
            raise InputError(f"{where}: expected 'samples' and 'pairs' lists, as written by `rprm-lite data pairs`")
        for pair in pairs:
            chosen, rejected = (_sample_text(samples, i, where) for i in _pair_indices(pair, where))
            records.append(PairRecord(solution, index, chosen, rejected, item.get("prompt_style")))
    if not records:
        raise InputError(f"{path}: no preference pairs; every step's critiques all agreed or all disagreed "
                         "with its label (sample more with a larger --k, or use more solutions)")
    return records


def _step_of(item: dict[str, Any], where: str) -> tuple[Solution, int]:
    solution = solution_from_dict({k: item[k] for k in ("question", "steps", "id") if k in item}, where=where)
    step = item.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= len(solution.steps):
        raise InputError(f"{where}: 'step' must be a step number from 1 to {len(solution.steps)}, got {step!r}")
    return solution, step - 1


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _pair_indices(pair: Any, where: str) -> tuple[int, int]:
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) for i in pair)):
        raise InputError(f"{where}: each pair must be [chosen sample index, rejected sample index], got {pair!r}")
    return pair[0], pair[1]


def _sample_text(samples: list[Any], index: int, where: str) -> str:
    if not 0 <= index < len(samples) or not isinstance(samples[index], dict):
        raise InputError(f"{where}: pair refers to sample {index}, but there are {len(samples)} samples")
    return _text(samples[index], "critique", f"{where} sample {index}")
