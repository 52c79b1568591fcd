"""Predictions files: one JSON object per line, appended and flushed as each item finishes.

A run killed mid-write leaves at most one cut-off last line; reading ignores it and the next
writer trims it, so an interrupted run resumes where it stopped. Each record keeps every step's
score and each critique's P(Yes), so metrics at another threshold or with fewer critiques (K)
can be computed later without the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rprm_lite.config import refuse_other_settings
from rprm_lite.errors import InputError
from rprm_lite.jsonl import read_json_file, read_jsonl
from rprm_lite.results import SolutionResult
from rprm_lite.solution import Solution

Scores = tuple[float | None, ...]  # per step, or per critique of a step; None where not scored
PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class BenchItem:
    """A solution to score plus the fields its record carries (subset, classification)."""

    solution: Solution
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.solution.id


@dataclass(frozen=True)
class Prediction:
    """One item's prediction in a benchmark-neutral form, however the file spelled it."""

    id: str
    scores: tuple[float | None, ...] | None = None  # per step; None where the step was not scored
    p_yes: tuple[tuple[float, ...], ...] | None = None  # per step, each critique's P(Yes)
    first_error: int | None = None  # a fixed prediction: 0-based first wrong step, -1 for none
    labels: tuple[bool, ...] | None = None  # fixed step labels, True = correct step
    group: str | None = None  # subset or classification when the record names it
    valid: bool = True  # PRMBench results may mark an item invalid; such items are skipped

    def with_k(self, k: int, rng: np.random.Generator) -> Prediction:
        """The same prediction as if only `k` of the recorded critiques had been sampled."""
        if self.p_yes is None:
            raise InputError(f"{self.id}: no per-critique p_yes recorded; K-scaling needs them")
        scores: list[float | None] = []
        for step_p_yes in self.p_yes:
            if not step_p_yes:
                scores.append(None)
                continue
            if len(step_p_yes) < k:
                raise InputError(f"{self.id}: a step has {len(step_p_yes)} critiques, fewer than K={k}")
            chosen = sorted(rng.choice(len(step_p_yes), size=k, replace=False))
            # summed in recorded order, as the scorer does, so K = all reproduces the step score exactly
            scores.append(sum(step_p_yes[i] for i in chosen) / k)
        return replace(self, scores=tuple(scores), first_error=None, labels=None)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file; a cut-off last line (a killed run) is ignored, the file untouched."""
    return [record for _, record in read_jsonl(path, what="a JSONL predictions file", skip_torn_end=True)]


def record_id(record: Mapping[str, Any], where: str) -> str:
    """The item id of a record (`id`, or `idx` as PRMBench results spell it)."""
    raw = record.get("id", record.get("idx"))
    if raw is None or isinstance(raw, (dict, list, bool)):
        raise InputError(f"{where}: expected an 'id' (or 'idx') naming the item, got {raw!r}")
    return str(raw)


def first_records(records: Iterable[Mapping[str, Any]],
                  where: str) -> tuple[dict[str, Mapping[str, Any]], int]:
    """Records by id, keeping the first of repeated ids as both benchmarks' own code does."""
    by_id: dict[str, Mapping[str, Any]] = {}
    repeated = 0
    for number, record in enumerate(records, start=1):
        key = record_id(record, f"{where} record {number}")
        if key in by_id:
            repeated += 1
        else:
            by_id[key] = record
    return by_id, repeated


def record_from_result(result: SolutionResult, *, critiques: bool = True, **fields: Any) -> dict[str, Any]:
    """The predictions-file line for one scored solution (the run's config lives in run.json)."""
    data = result.to_dict(critiques=critiques)
    data.pop("config", None)
    data.pop("extra", None)
    # through JSON, so the record in memory is exactly what a resumed run reads back
    record: dict[str, Any] = json.loads(json.dumps({"id": data.pop("id"), **fields, **data}))
    return record


def steps_from_record(record: Mapping[str, Any],
                      where: str) -> tuple[Scores, tuple[tuple[float, ...], ...]] | None:
    """(scores, p_yes) from a record in our format (`steps` with `score` and `p_yes`), else None."""
    steps = record.get("steps")
    if steps is None:
        return None
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise InputError(f"{where}: 'steps' must be a list of objects with 'score' and 'p_yes'")
    scores = tuple(_score(step.get("score"), f"{where} step {i}") for i, step in enumerate(steps, start=1))
    p_yes = tuple(tuple(_probability(p, f"{where} step {i} p_yes") for p in step.get("p_yes") or ())
                  for i, step in enumerate(steps, start=1))
    return scores, p_yes


def score_list(value: Any, where: str) -> tuple[float | None, ...]:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of step scores, got {type(value).__name__}")
    return tuple(_score(v, f"{where} step {i}") for i, v in enumerate(value, start=1))


def _score(value: Any, where: str) -> float | None:
    return None if value is None else _probability(value, where, null="(or null)")


def _probability(value: Any, where: str, null: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"{where}: expected a score between 0 and 1{' ' + null if null else ''}, got {value!r}")
    return float(value)


def check_run(out_dir: Path, run: Mapping[str, Any]) -> None:
    """Write run.json, or check that a resumed run uses the settings of the one it continues."""
    path = out_dir / RUN_FILE
    if path.exists():
        try:
            previous, _ = read_json_file(path, where=str(path))
            if not isinstance(previous, dict):
                raise InputError(f"{path}: expected a JSON object, as `rprm-lite bench` writes")
        except InputError as exc:
            raise InputError(f"{exc}; remove it or choose another --out") from None
        other = [f"benchmark: {previous.get('benchmark')!r} before, {run['benchmark']!r} now"
                 ] if previous.get("benchmark") != run.get("benchmark") else []
        refuse_other_settings(previous.get("config", {}), run["config"], holder=str(out_dir), what="predictions",
                              option="--out", also=other)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
