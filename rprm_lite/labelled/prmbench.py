"""PRMBench: data, predictions and PRMScore as the benchmark's own evaluation code computes it.

Matched to ssmisya/PRMBench `mr_eval/tasks/prmtest_classified/task.py` (load_data_function,
evaluate_function, eval_on_hallucination_step) and to the leaderboard script
(`get_prmscore_from_current_res_dict` in NJUNLP/R-PRM src/evaluate/PRMBench/code/new_get_result.py):
- an item's id is `<classification>_<idx>`; the first item and the first result of an id win;
- steps are counted over the result's labels: a result with more labels than the item has steps
  counts the extra steps as correct steps, one with fewer leaves the rest uncounted;
- the positive class is a correct step: TP = correct step labelled correct, FP = wrong step labelled
  correct, TN = wrong step labelled wrong, FN = correct step labelled wrong;
- PRMScore = 0.5 * F1 + 0.5 * negative F1; multi_solutions (no wrong steps) uses F1 alone;
  a dimension is the plain mean of its categories; "overall" pools the counts of every step;
- results marked `"validity": false` are skipped; up to 4 missing items are tolerated.
One deliberate difference: where the official code writes -1 for an undefined precision, recall or
F1 (a group with no steps of a kind), we report null, and a PRMScore that needs it is null too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.solution import Solution

from .records import BenchItem, Prediction, first_records, score_list, steps_from_record

# classification -> (abbreviation used in the paper, dimension)
CATEGORIES: dict[str, tuple[str, str]] = {
    "redundency": ("NR", "simplicity"),
    "circular": ("NCL", "simplicity"),
    "counterfactual": ("ES", "soundness"),
    "step_contradiction": ("SC", "soundness"),
    "domain_inconsistency": ("DC", "soundness"),
    "confidence": ("CI", "soundness"),
    "missing_condition": ("PS", "sensitivity"),
    "deception": ("DR", "sensitivity"),
    "multi_solutions": ("MS", "sensitivity"),
}
DIMENSIONS = ("simplicity", "soundness", "sensitivity")
POSITIVE_F1_ONLY = frozenset({"multi_solutions"})  # every step is correct: there is no negative class
SUBSET400_FILE = "subset400_target_data.jsonl"
MISSING_TOLERATED = 4  # the official code asserts abs(len(results) - len(items)) < 5
DEFAULT_THRESHOLD = 0.5  # a step is labelled correct when its score is above this


@dataclass(frozen=True)
class PRMBenchItem:
    id: str  # <classification>_<idx>, as the official code keys items
    classification: str
    question: str
    steps: tuple[str, ...]
    error_steps: frozenset[int]  # 1-based

    def bench_item(self) -> BenchItem:
        # Built directly, not through Solution.create: three items hold an empty step, which is
        # scored as it is so that step numbers keep matching `error_steps`.
        return BenchItem(Solution(question=self.question, steps=self.steps, id=self.id),
                         {"classification": self.classification})


def load_prmbench(folder: str | Path, *, subset400: bool = False) -> list[PRMBenchItem]:
    """The classified test set (every *.jsonl but the subset file), or the official 394-item subset."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; expected the PRMBench folder of classified JSONL files")
    if subset400:
        files = [folder / SUBSET400_FILE]
        if not files[0].is_file():
            raise InputError(f"{folder}: missing {SUBSET400_FILE}, the official subset (--subset400)")
    else:
        files = sorted(p for p in folder.glob("*.jsonl") if p.name != SUBSET400_FILE)
        if not files:
            raise InputError(f"{folder}: no .jsonl files; expected PRMBench's classified files "
                             "(e.g. prm800k_test_p1_4o_circular.jsonl)")
    items: dict[str, PRMBenchItem] = {}
    for path in files:
        for item in _read_file(path):
            items.setdefault(item.id, item)
    return list(items.values())


def _read_file(path: Path) -> list[PRMBenchItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_item(json.loads(line), f"{path.name} line {number}"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name} line {number}: invalid JSON ({exc.msg})") from None
    return items


def _item(entry: Any, where: str) -> PRMBenchItem:
    needed = {"idx", "classification", "modified_question", "modified_process", "error_steps"}
    if not isinstance(entry, dict) or not needed <= entry.keys():
        raise InputError(f"{where}: expected a PRMBench item with {', '.join(sorted(needed))}")
    steps, errors = entry["modified_process"], entry["error_steps"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise InputError(f"{where}: 'modified_process' must be a non-empty list of strings")
    if not isinstance(errors, list) or any(isinstance(e, bool) or not isinstance(e, int) for e in errors):
        raise InputError(f"{where}: 'error_steps' must be a list of 1-based step numbers, got {errors!r}")
    classification = str(entry["classification"])
    return PRMBenchItem(id=f"{classification}_{entry['idx']}", classification=classification,
                        question=str(entry["modified_question"]), steps=tuple(steps),
                        error_steps=frozenset(errors))


# -- predictions ---------------------------------------------------------------------------------
def parse_predictions(records: Sequence[Mapping[str, Any]], *,
                      where: str) -> tuple[dict[str, Prediction], int]:
    """Our records (`steps` with scores), or PRMBench's result format (`idx`, `scores` object)."""
    by_id, repeated = first_records(records, where)
    return {key: _prediction(key, record, f"{where} item {key}") for key, record in by_id.items()}, repeated


def _prediction(key: str, record: Mapping[str, Any], where: str) -> Prediction:
    valid = record.get("validity", True) is not False
    ours = steps_from_record(record, where)
    if ours is not None:
        return Prediction(id=key, scores=ours[0], p_yes=ours[1], valid=valid)
    scores = record.get("scores")
    if not isinstance(scores, dict):
        raise InputError(f"{where}: expected our 'steps' or PRMBench's 'scores' object with "
                         "'step_level_validity_scores' and/or 'step_level_validity_labels'")
    values = scores.get("step_level_validity_scores")
    labels = scores.get("step_level_validity_labels")
    redundancy = scores.get("step_level_redundancy_labels")
    if redundancy is not None and key.startswith(("redundency_", "circular_")):
        labels = [not label for label in _labels(redundancy, where)]  # as the official code does
    if values is None and labels is None:
        raise InputError(f"{where}: 'scores' has neither 'step_level_validity_scores' nor "
                         "'step_level_validity_labels'")
    return Prediction(id=key, valid=valid,
                      scores=None if values is None else score_list(values, f"{where} validity scores"),
                      labels=None if labels is None else tuple(_labels(labels, where)))


def _labels(labels: Any, where: str) -> list[bool]:
    if not isinstance(labels, list) or any(isinstance(x, float) or x not in (0, 1) for x in labels):
        raise InputError(f"{where}: step labels must be a list of true/false (or 1/0), got {labels!r:.80}")
    return [bool(label) for label in labels]


def step_labels(prediction: Prediction, threshold: float | None) -> tuple[bool, ...]:
    """Labels as given when no threshold is set; else score > threshold (True = correct step)."""
    if prediction.labels is not None and (threshold is None or prediction.scores is None):
        return prediction.labels
    if prediction.scores is None:
        raise InputError(f"{prediction.id}: no step scores to label")
    if None in prediction.scores:
        step = prediction.scores.index(None) + 1
        raise InputError(f"{prediction.id}: step {step} was not scored; PRMBench counts every step, so "
                         "score with all steps")
    cut = DEFAULT_THRESHOLD if threshold is None else threshold
    return tuple(score is not None and score > cut for score in prediction.scores)  # None was refused above


# -- the metric ----------------------------------------------------------------------------------
@dataclass
class Counts:
    tp: int = 0  # correct step labelled correct
    fp: int = 0  # wrong step labelled correct
    tn: int = 0  # wrong step labelled wrong
    fn: int = 0  # correct step labelled wrong
    items: int = 0
    mismatched: list[str] = field(default_factory=list)

    def add(self, error_steps: frozenset[int], labels: Sequence[bool]) -> None:
        for number, correct_label in enumerate(labels, start=1):
            wrong_step = number in error_steps
            if correct_label:
                self.fp += wrong_step
                self.tp += not wrong_step
            else:
                self.tn += wrong_step
                self.fn += not wrong_step
        self.items += 1

    def scores(self, positive_only: bool = False) -> dict[str, Any]:
        f1 = _f1(self.tp, self.fp, self.fn)
        negative_f1 = _f1(self.tn, self.fn, self.fp)
        if positive_only:
            prm_score = f1
        else:
            prm_score = None if f1 is None or negative_f1 is None else 0.5 * f1 + 0.5 * negative_f1
        return {"prm_score": prm_score, "f1": f1, "negative_f1": negative_f1, "tp": self.tp, "fp": self.fp,
                "tn": self.tn, "fn": self.fn, "items": self.items}


def _f1(hits: int, false_alarms: int, misses: int) -> float | None:
    """F1 in percent of one class; None when the class is neither present nor predicted."""
    total = 2 * hits + false_alarms + misses
    return 100 * 2 * hits / total if total else None


def select(items: Sequence[PRMBenchItem], predictions: Mapping[str, Prediction], *,
           partial: bool = False, known_ids: set[str] | None = None) -> list[tuple[PRMBenchItem, Prediction]]:
    """Pair items with predictions. `known_ids`: every id of the full data (a subset run may ignore some)."""
    by_id = {item.id: item for item in items}
    known = known_ids if known_ids is not None else set(by_id)
    unknown = [key for key in predictions if key not in known and not key.startswith("correct_")]
    if unknown:
        raise InputError(f"{len(unknown)} prediction(s) name ids not in the data "
                         f"(e.g. {', '.join(unknown[:3])}); PRMBench ids are <classification>_<idx>, "
                         "e.g. circular_prm_test_p1_0")
    missing = [item.id for item in items if item.id not in predictions]
    if len(missing) > MISSING_TOLERATED and not partial:
        raise InputError(f"{len(missing)} of {len(items)} items have no prediction "
                         f"(e.g. {', '.join(missing[:3])}); the official evaluation tolerates "
                         f"{MISSING_TOLERATED}; pass --partial to evaluate only the predicted items")
    return [(item, predictions[item.id]) for item in items if item.id in predictions]


def evaluate(pairs: Sequence[tuple[PRMBenchItem, Prediction]],
             threshold: float | None = None) -> dict[str, Any]:
    """PRMScore overall, per dimension and per category (percent), from step labels."""
    overall, categories = Counts(), {name: Counts() for name in CATEGORIES}
    skipped = 0
    for item, prediction in pairs:
        if not prediction.valid:
            skipped += 1
            continue
        labels = step_labels(prediction, threshold)
        if len(labels) != len(item.steps):
            overall.mismatched.append(item.id)
        counts = categories.setdefault(item.classification, Counts())
        counts.add(item.error_steps, labels)
        overall.add(item.error_steps, labels)
    per_category = {name: {"abbreviation": CATEGORIES.get(name, (name,))[0],
                           **counts.scores(positive_only=name in POSITIVE_F1_ONLY)}
                    for name, counts in categories.items() if counts.items}
    return {"benchmark": "prmbench", "threshold": threshold,
            "label_rule": (f"labels as given, else correct when score > {DEFAULT_THRESHOLD}" if threshold is None
                           else f"correct when score > {threshold}"),
            "items": overall.items, "invalid_skipped": skipped,
            "step_count_mismatches": {"count": len(overall.mismatched), "ids": overall.mismatched[:10]},
            "overall": overall.scores(), "dimensions": _dimensions(per_category), "categories": per_category}


def _dimensions(per_category: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    result = {}
    for dimension in DIMENSIONS:
        members = [name for name, (_, dim) in CATEGORIES.items() if dim == dimension]
        values = [per_category.get(name, {}).get("prm_score") for name in members]
        present = [value for value in values if value is not None]
        result[dimension] = None if len(present) != len(values) else sum(present) / len(present)
    return result


def headline(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The numbers a sweep plots: overall PRMScore and each dimension."""
    return {"overall": metrics["overall"]["prm_score"], **metrics["dimensions"]}
