"""ProcessBench (Qwen): data, predictions and the official metric.

The metric follows the benchmark's own evaluation code (QwenLM/ProcessBench, code/run_eval_prm_*.py):
per subset, error accuracy is the share of items with `label != -1` whose predicted first wrong step
equals `label`, correct accuracy the share of items with `label == -1` predicted as -1, F1 their
harmonic mean (in percent); the reported average is the plain mean of the subset F1s. A PRM predicts
the first step whose score is below the threshold (R-PRM's `compute_match`), else -1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.solution import Solution

from .records import BenchItem, Prediction, first_records, score_list, steps_from_record

SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")
HUB_REPO = "Qwen/ProcessBench"
# "Upload 4 files": the annotations of the paper and of its code repository. The hub's later
# "fix annotation" commit changed a few labels in math.json; pass --revision main to use it.
HUB_REVISION = "d68dcabccec1ddfba39ff7e809999232e0799d3c"
DEFAULT_THRESHOLD = 0.5


class UndeterminedError(InputError):
    """Some items cannot be re-scored at this threshold: scoring stopped early above it."""

    def __init__(self, ids: Sequence[str], threshold: float) -> None:
        self.ids = list(ids)
        super().__init__(
            f"{len(ids)} item(s) (e.g. {', '.join(ids[:3])}) were scored with early stop and have no "
            f"step below {threshold} among their scored steps, so their first error is unknown at this "
            "threshold; score with --all-steps to re-score below the run's threshold")


@dataclass(frozen=True)
class ProcessBenchItem:
    id: str
    subset: str
    problem: str
    steps: tuple[str, ...]
    label: int  # 0-based index of the first wrong step, -1 when every step is right

    def bench_item(self) -> BenchItem:
        return BenchItem(Solution(question=self.problem, steps=self.steps, id=self.id),
                         {"subset": self.subset})


def parse_subsets(text: str | Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(text, str):
        text = text.split(",")
    names = SUBSETS if text is None else [name.strip() for name in text]
    unknown = [name for name in names if name not in SUBSETS]
    if unknown or not names:
        raise InputError(f"unknown ProcessBench subset {', '.join(unknown) or '(none)'}; "
                         f"expected a comma-separated list of {', '.join(SUBSETS)}")
    return tuple(dict.fromkeys(names))


def load_processbench(source: str | Path, subsets: Sequence[str] = SUBSETS, *,
                      revision: str = HUB_REVISION) -> list[ProcessBenchItem]:
    """Items of the given subsets from a folder of `<subset>.json` files, or from the hub ("hub")."""
    if str(source) == "hub":
        files = {name: _hub_file(name, revision) for name in subsets}
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder; expected a folder holding the ProcessBench files "
                             f"{', '.join(s + '.json' for s in SUBSETS)} (or --data hub)")
        files = {name: folder / f"{name}.json" for name in subsets}
        missing = [path.name for path in files.values() if not path.is_file()]
        if missing:
            raise InputError(f"{folder}: missing {', '.join(missing)}; expected one JSON file per subset")
    return [item for name, path in files.items() for item in _read_subset(path, name)]


def _hub_file(subset: str, revision: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise InputError("--data hub needs huggingface_hub (pip install 'rprm-lite[bench]'), "
                         "or pass a folder with the ProcessBench JSON files") from None
    try:
        return Path(hf_hub_download(HUB_REPO, f"{subset}.json", repo_type="dataset", revision=revision))
    except Exception as exc:  # network, auth and missing-revision errors all end the same way
        raise InputError(f"cannot download {HUB_REPO}/{subset}.json at {revision}: {exc}") from None


def _read_subset(path: Path, subset: str) -> list[ProcessBenchItem]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of ProcessBench items, got {type(data).__name__}")
    return [_item(entry, subset, f"{path.name} item {i}") for i, entry in enumerate(data, start=1)]


def _item(entry: Any, subset: str, where: str) -> ProcessBenchItem:
    if not isinstance(entry, dict) or not {"id", "problem", "steps", "label"} <= entry.keys():
        raise InputError(f"{where}: expected an object with 'id', 'problem', 'steps' and 'label'")
    steps, label = entry["steps"], entry["label"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise InputError(f"{where}: 'steps' must be a non-empty list of strings")
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
        raise InputError(f"{where}: 'label' must be -1 or a step index 0..{len(steps) - 1}, got {label!r}")
    return ProcessBenchItem(id=str(entry["id"]), subset=subset, problem=str(entry["problem"]),
                            steps=tuple(steps), label=label)


# -- predictions ---------------------------------------------------------------------------------
def parse_predictions(records: Sequence[Mapping[str, Any]], *,
                      where: str) -> tuple[dict[str, Prediction], int]:
    """Our records (`steps` with scores), or other PRMs' (`scores` list, or a `prediction` index)."""
    by_id, repeated = first_records(records, where)
    return {key: _prediction(key, record, f"{where} item {key}") for key, record in by_id.items()}, repeated


def _prediction(key: str, record: Mapping[str, Any], where: str) -> Prediction:
    group = record.get("subset")
    ours = steps_from_record(record, where)
    if ours is not None:
        return Prediction(id=key, scores=ours[0], p_yes=ours[1], group=group)
    if "scores" in record:
        return Prediction(id=key, scores=score_list(record["scores"], f"{where} 'scores'"), group=group)
    index = record.get("prediction")
    if isinstance(index, bool) or not isinstance(index, int):
        raise InputError(f"{where}: expected per-step 'scores' (or our 'steps') or an integer 'prediction' "
                         f"(first wrong step, 0-based, -1 for none); got keys {', '.join(sorted(record))}")
    return Prediction(id=key, first_error=index, group=group)


def first_error(prediction: Prediction, n_steps: int, threshold: float) -> int | None:
    """0-based first step scored below `threshold`, -1 when none; None when early stop hides it."""
    if prediction.scores is None:
        found = prediction.first_error
        if found is None or not -1 <= found < n_steps:
            raise InputError(f"{prediction.id}: 'prediction' must be -1 or 0..{n_steps - 1}, got {found}")
        return found
    if len(prediction.scores) > n_steps:
        raise InputError(f"{prediction.id}: {len(prediction.scores)} step scores for an item with "
                         f"{n_steps} steps; the predictions do not belong to this data")
    for index, score in enumerate(prediction.scores):
        if score is None:
            return None
        if score < threshold:
            return index
    return -1 if len(prediction.scores) == n_steps else None


# -- the metric ----------------------------------------------------------------------------------
def select(items: Sequence[ProcessBenchItem], predictions: Mapping[str, Prediction], *,
           partial: bool = False) -> list[tuple[ProcessBenchItem, Prediction]]:
    """Pair items with predictions; predictions of other subsets are left out, unknown ids are errors."""
    by_id = {item.id: item for item in items}
    subsets = {item.subset for item in items}
    unknown = [key for key, p in predictions.items()
               if key not in by_id and (p.group in subsets or p.group is None)]
    if unknown:
        raise InputError(f"{len(unknown)} prediction(s) name ids not in the data "
                         f"(e.g. {', '.join(unknown[:3])}); check --data and --subsets")
    missing = [item.id for item in items if item.id not in predictions]
    if missing and not partial:
        raise InputError(f"{len(missing)} of {len(items)} items have no prediction "
                         f"(e.g. {', '.join(missing[:3])}); pass --partial to evaluate only the "
                         "predicted items")
    return [(item, predictions[item.id]) for item in items if item.id in predictions]


def evaluate(pairs: Sequence[tuple[ProcessBenchItem, Prediction]],
             threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Per-subset error accuracy, correct accuracy and F1 (percent) and their average F1."""
    matches: dict[str, tuple[list[bool], list[bool]]] = {}
    undetermined = []
    for item, prediction in pairs:
        predicted = first_error(prediction, len(item.steps), threshold)
        if predicted is None:
            undetermined.append(item.id)
            continue
        errors, corrects = matches.setdefault(item.subset, ([], []))
        (errors if item.label != -1 else corrects).append(predicted == item.label)
    if undetermined:
        raise UndeterminedError(undetermined, threshold)
    subsets = {name: subset_scores(*matches[name]) for name in SUBSETS if name in matches}
    f1s = [s["f1"] for s in subsets.values()]
    average = sum(f1s) / len(f1s) if f1s and None not in f1s else None
    return {"benchmark": "processbench", "threshold": threshold, "items": len(pairs),
            "subsets": subsets, "average_f1": average}


def subset_scores(error_matches: Sequence[bool], correct_matches: Sequence[bool]) -> dict[str, Any]:
    error_acc = 100 * sum(error_matches) / len(error_matches) if error_matches else None
    correct_acc = 100 * sum(correct_matches) / len(correct_matches) if correct_matches else None
    if error_acc is None or correct_acc is None:
        f1 = None  # the official code would print nan: F1 needs items of both kinds
    else:
        f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc) if error_acc + correct_acc else 0.0
    return {"error_acc": error_acc, "correct_acc": correct_acc, "f1": f1,
            "error_items": len(error_matches), "correct_items": len(correct_matches)}


def headline(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The numbers a sweep plots: each subset's F1 and the average."""
    return {**{name: s["f1"] for name, s in metrics["subsets"].items()}, "average": metrics["average_f1"]}
