"""Small markdown tables of benchmark results, printed by the CLI and written beside the JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rprm_lite.labelled.prmbench import CATEGORIES, DIMENSIONS
from rprm_lite.markdown import table


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def processbench_table(metrics: Mapping[str, Any]) -> str:
    rows = [(name, number(s["error_acc"]), number(s["correct_acc"]), number(s["f1"]),
             s["error_items"] + s["correct_items"]) for name, s in metrics["subsets"].items()]
    rows.append(("average", "", "", number(metrics["average_f1"]), metrics["items"]))
    title = f"ProcessBench (threshold {metrics['threshold']})"
    return title + "\n\n" + table(("subset", "error acc", "correct acc", "F1", "items"), rows)


def prmbench_table(metrics: Mapping[str, Any]) -> str:
    categories = metrics["categories"]
    rows = [("overall", "", number(metrics["overall"]["prm_score"]), metrics["overall"]["items"])]
    for dimension in DIMENSIONS:
        rows.append((dimension, "", number(metrics["dimensions"][dimension]), ""))
        rows += [(f"  {name}", abbr, number(categories[name]["prm_score"]), categories[name]["items"])
                 for name, (abbr, dim) in CATEGORIES.items() if dim == dimension and name in categories]
    text = f"PRMBench PRMScore ({metrics['label_rule']})\n\n"
    text += table(("category", "abbr.", "PRMScore", "items"), rows)
    mismatches = metrics["step_count_mismatches"]["count"]
    if mismatches:
        text += (f"\n\n{mismatches} prediction(s) have a step count that differs from their item; "
                 "counted over the prediction's steps, as the official code does")
    return text


def bon_table(report: Mapping[str, Any]) -> str:
    rows = [("pass@1", number(report["pass@1"])), ("majority vote", number(report["majority_vote"])),
            ("pass@N", number(report["pass@n"]))]
    rows += [(f"PRM best-of-N ({how})", number(value)) for how, value in report["best_of_n"].items()]
    sizes = ", ".join(str(n) for n in report["candidates_per_problem"])
    title = f"Best-of-N accuracy, {report['problems']} problems, N = {sizes}"
    return title + "\n\n" + table(("method", "accuracy"), rows)


def sweep_table(rows: Sequence[Mapping[str, Any]], name: str) -> str:
    body = [(row["threshold"], number(row.get(name))) for row in rows]
    return table(("threshold", name), body)
