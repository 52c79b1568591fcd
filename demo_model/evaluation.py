"""How the recipe measures its models on the synthetic test split: ProcessBench's metric, per error kind,
with bootstrap intervals (and paired ones for the differences between two models).

    python -m rprm_lite.demo_model.evaluation --recipe build/recipe   # the table again, from the predictions

Each evaluated model has `eval/<name>/predictions.jsonl`; an item counts as right when its predicted first
wrong step (first score below the threshold, -1 for none) equals its label. F1 is the harmonic mean of the
error accuracy (items with an error) and the correct accuracy (items without). Intervals resample the 300
items with replacement (2,000 times, fixed seed), the same draws for every model, so a difference between
two models is judged on paired resamples.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rprm_lite.demo_model.synthetic_problems import ERROR_KINDS
from rprm_lite.markdown import table

RESAMPLES = 2000
KIND_SHORT = {"arithmetic": "arith", "copy": "copy", "operation": "op", "contradiction": "contra"}


def evaluate_processbench(model: Path, data: Path, out: Path, *, k: int, seed: int, max_tokens: int | None,
                          lora: Sequence[str] = (), adaptive: bool = False, threads: int | None = None,
                          calculator: str | None = None, critiques: bool = False) -> dict[str, Any]:
    """ProcessBench metrics of one model (with its LoRA adapters) on a synthetic split (K=1 is greedy), via the
    benchmark harness, and the wall seconds per scored step. As ProcessBench needs only the first error, steps
    after the first one scored wrong are not scored. `calculator` ("on"/"off") and `max_tokens` override the model
    file's when given; `critiques` keeps the critiques' text in the predictions."""
    from rprm_lite.bench.harness import run_items
    from rprm_lite.labelled import processbench
    from rprm_lite.scoring import Scorer

    items = processbench.load_processbench(data, (processbench.SUBSETS[0],))
    temperature = {"temperature": 0.0} if k == 1 else {}
    done_before = _scored_ids(out / "predictions.jsonl")
    started = time.perf_counter()
    given = {"threads": threads, "calculator": calculator, "max_tokens": max_tokens}
    with Scorer(model, k=k, seed=seed, lora=list(lora), adaptive=adaptive, **temperature,
                **{name: value for name, value in given.items() if value}) as scorer:
        summary = run_items([i.bench_item() for i in items], scorer, out, benchmark="processbench",
                            critiques=critiques)
        threshold = scorer.config.threshold
    seconds = time.perf_counter() - started
    predictions, _ = processbench.parse_predictions(summary.records, where=str(out))
    metrics = processbench.evaluate(processbench.select(items, predictions), threshold)
    scores = metrics["subsets"][processbench.SUBSETS[0]]
    outcomes = item_outcomes(data, Path(summary.predictions_path), threshold)
    steps = sum(sum(score is not None for score in p.scores or ()) for key, p in predictions.items()
                if key not in done_before)  # the steps this call scored: a resumed item took no time here
    return {"f1": scores["f1"], "error_acc": scores["error_acc"], "correct_acc": scores["correct_acc"],
            "per_kind": per_kind(outcomes), "items": len(items), "predictions": str(summary.predictions_path),
            "seconds_per_step": round(seconds / steps, 2) if steps else None}


def timing(result: Mapping[str, Any]) -> str:
    """The seconds per step an evaluation scored; one that resumed every item scored none and is not timed."""
    seconds = result.get("seconds_per_step")
    return f"{seconds:.2f} s per scored step" if seconds else "not timed here (every problem was resumed)"


def _scored_ids(predictions: Path) -> set[str]:
    """The ids a predictions file already holds (none when it does not exist yet)."""
    if not predictions.is_file():
        return set()
    with predictions.open(encoding="utf-8") as lines:
        return {json.loads(line)["id"] for line in lines if line.strip()}


def item_outcomes(data: Path, predictions: Path, threshold: float = 0.5) -> list[tuple[str | None, bool]]:
    """(error kind or None, predicted first error == label) per test item, in id order."""
    from rprm_lite.labelled import processbench

    raw = {entry["id"]: entry for entry in json.loads((data / "gsm8k.json").read_text(encoding="utf-8"))}
    items = processbench.load_processbench(data, (processbench.SUBSETS[0],))
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines() if line.strip()]
    parsed, _ = processbench.parse_predictions(records, where=str(predictions))
    outcomes = []
    for item, prediction in sorted(processbench.select(items, parsed), key=lambda pair: pair[0].id):
        error = raw[item.id]["trace"]["error"]
        predicted = processbench.first_error(prediction, len(item.steps), threshold)
        outcomes.append((error["kind"] if error else None, predicted == item.label))
    return outcomes


def scores(outcomes: Sequence[tuple[str | None, bool]]) -> tuple[float, float, float]:
    errors = [right for kind, right in outcomes if kind]
    corrects = [right for kind, right in outcomes if not kind]
    error_acc = 100 * sum(errors) / max(len(errors), 1)
    correct_acc = 100 * sum(corrects) / max(len(corrects), 1)
    f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc) if error_acc + correct_acc else 0.0
    return error_acc, correct_acc, f1


def per_kind(outcomes: Sequence[tuple[str | None, bool]]) -> dict[str, float]:
    return {kind: 100 * sum(r for k, r in outcomes if k == kind) / max(sum(k == kind for k, _ in outcomes), 1)
            for kind in ERROR_KINDS}


def bootstrap_f1(runs: Mapping[str, Sequence[tuple[str | None, bool]]], *, seed: int = 0
                 ) -> dict[str, list[float]]:
    """F1 of every run on the same `RESAMPLES` resamples of the items."""
    n = len(next(iter(runs.values())))
    rng = random.Random(seed)
    draws = [[rng.randrange(n) for _ in range(n)] for _ in range(RESAMPLES)]
    return {name: [scores([outcomes[i] for i in draw])[2] for draw in draws] for name, outcomes in runs.items()}


def interval(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[int(0.025 * len(ordered))], ordered[int(0.975 * len(ordered)) - 1]


def report(runs: Mapping[str, Sequence[tuple[str | None, bool]]], comparisons: Sequence[tuple[str, str]]) -> str:
    """The markdown table (with 95% intervals of F1) and the paired differences asked for."""
    samples = bootstrap_f1(runs)
    kinds = " / ".join(KIND_SHORT[k] for k in ERROR_KINDS)
    rows = []
    for name, outcomes in runs.items():
        error_acc, correct_acc, f1 = scores(outcomes)
        low, high = interval(samples[name])
        by_kind = " / ".join(f"{v:.0f}" for v in per_kind(outcomes).values())
        rows.append((name, f"{error_acc:.1f}", f"{correct_acc:.1f}", f"{f1:.1f} [{low:.1f}, {high:.1f}]", by_kind))
    lines = [table(("model", "error acc", "correct acc", "F1 [95% interval]", f"error acc per kind ({kinds})"), rows,
                   align="lrrrl"), ""]
    for better, worse in comparisons:
        if better in runs and worse in runs:
            difference = [a - b for a, b in zip(samples[better], samples[worse], strict=True)]
            low, high = interval(difference)
            delta = scores(runs[better])[2] - scores(runs[worse])[2]
            verdict = "beyond the noise" if low > 0 else ("worse beyond the noise" if high < 0 else "within the noise")
            lines.append(f"- F1 {better} - {worse}: {delta:+.1f} (paired 95% interval [{low:+.1f}, {high:+.1f}]): "
                         f"{verdict}")
    return "\n".join(lines) + "\n"


def recipe_report(recipe: Path, names: Sequence[str], data: Path, eval_k: int) -> str:
    runs = {name: item_outcomes(data, recipe / "eval" / folder_name(name) / "predictions.jsonl") for name in names}
    comparisons = [("SFT K=1", "base K=1"), ("DPO K=1", "SFT K=1")]
    comparisons += [(f"{final} K={eval_k}", f"{final} K=1") for final in ("SFT", "DPO")]
    comparisons += [(f"{final} adaptive", f"{final} K=1") for final in ("SFT", "DPO")]
    return report(runs, comparisons)


def folder_name(name: str) -> str:
    return name.replace(" ", "-").replace("=", "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The recipe's evaluation table, from its predictions.")
    parser.add_argument("--recipe", type=Path, default=Path("build/recipe"))
    parser.add_argument("--data", type=Path, help="The split evaluated (default: RECIPE/data/test).")
    parser.add_argument("--eval-k", type=int, default=10)
    args = parser.parse_args(argv)
    names = ["base K=1", "SFT K=1", "DPO K=1"] + [f"{final} {run}" for final in ("SFT", "DPO")
                                                  for run in (f"K={args.eval_k}", "adaptive")]
    present = [n for n in names if (args.recipe / "eval" / folder_name(n) / "predictions.jsonl").is_file()]
    print(recipe_report(args.recipe, present, args.data or args.recipe / "data" / "test", args.eval_k), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
