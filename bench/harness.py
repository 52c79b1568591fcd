"""The scoring loop every accuracy benchmark shares: score items in turn, append each record, resume.

The loop takes any object with `score_solution(solution)` returning a `SolutionResult`
(the real `rprm_lite.scoring.Scorer`, or a small fake in tests of resume and metrics).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rprm_lite.jsonl import JsonlWriter
from rprm_lite.labelled.records import PREDICTIONS_FILE, BenchItem, check_run, read_records, record_from_result
from rprm_lite.results import SolutionResult
from rprm_lite.solution import Solution


class ScorerLike(Protocol):
    def score_solution(self, solution: Solution) -> SolutionResult: ...


@dataclass(frozen=True)
class RunSummary:
    predictions_path: Path
    records: list[dict[str, Any]]  # the records of the selected items, in item order
    resumed: int  # items found already scored in the predictions file
    scored: int  # items scored by this run


ItemCallback = Callable[[BenchItem, dict[str, Any]], None]


def run_items(items: Sequence[BenchItem], scorer: ScorerLike, out_dir: str | Path, *, benchmark: str,
              critiques: bool = True, on_item: ItemCallback | None = None) -> RunSummary:
    """Score every item not yet in `out_dir/predictions.jsonl`, appending one record per item."""
    out_dir = Path(out_dir)
    check_run(out_dir, run_metadata(scorer, benchmark))
    path = out_dir / PREDICTIONS_FILE
    done = {str(r.get("id")): r for r in read_records(path)} if path.exists() else {}
    todo = [item for item in items if item.id not in done]
    many = getattr(scorer, "score_many", None)  # the remote scorer keeps several solutions in flight
    results = (many([item.solution for item in todo]) if many is not None
               else (scorer.score_solution(item.solution) for item in todo))
    with JsonlWriter(path) as writer:
        for item, result in zip(todo, results, strict=True):
            record = record_from_result(result, critiques=critiques, **item.fields)
            writer.write(record)
            done[item.id] = record
            if on_item is not None:
                on_item(item, record)
    return RunSummary(predictions_path=path, records=[done[item.id] for item in items],
                      resumed=len(items) - len(todo), scored=len(todo))


def run_metadata(scorer: ScorerLike, benchmark: str) -> dict[str, Any]:
    """What run.json records: the benchmark and the scorer's settings, model hash and versions."""
    describe = getattr(scorer, "run_metadata", None)
    if callable(describe):
        config = dict(describe())
    else:
        config = getattr(scorer, "config", None)
        config = config.to_dict() if hasattr(config, "to_dict") else {}
    return {"benchmark": benchmark, "config": config, "python": platform.python_version()}
