"""What an uncertain band does on labelled data: how many steps it leaves undecided, and how often the
verdicts it does give are right, against every step decided at the threshold.

Step labels are the calibration's (`calibration.labelled_steps`): every PRMBench step; in ProcessBench
the steps up to and including the first error. Verdicts follow the runtime (`rprm_lite/verdict_rule.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rprm_lite.config import band_problems
from rprm_lite.errors import InputError
from rprm_lite.labelled import fit
from rprm_lite.markdown import table
from rprm_lite.verdict_rule import Band, step_verdict

VERDICTS = ("correct", "uncertain", "wrong")


def band_report(benchmark: str, pairs: Sequence[tuple], band: Band, threshold: float) -> dict[str, Any]:
    problems = list(band_problems(band, threshold))
    if problems:
        raise InputError("; ".join(problems))
    data = (fit.processbench_data if benchmark == "processbench" else fit.prmbench_data)(pairs)
    scores, correct = fit.labelled_steps(data)
    banded = [step_verdict(float(s), threshold, band) for s in scores]
    plain = [step_verdict(float(s), threshold, None) for s in scores]
    decided = [(v, c) for v, c in zip(banded, correct, strict=True) if v != "uncertain"]
    counts = {kind: {verdict: sum(1 for v, c in zip(banded, correct, strict=True) if v == verdict and c == is_correct)
                     for verdict in VERDICTS} for kind, is_correct in (("correct_steps", True), ("wrong_steps", False))}
    return {
        "band": list(band), "threshold": threshold, "labelled_steps": len(scores),
        "uncertain_steps": banded.count("uncertain"), "uncertain_share": banded.count("uncertain") / len(scores),
        "step_accuracy_at_threshold": _accuracy(zip(plain, correct, strict=True)),
        "step_accuracy_decided": _accuracy(decided) if decided else None,
        "verdicts": counts,
    }


def _accuracy(pairs) -> float:
    pairs = list(pairs)
    return 100 * sum((verdict == "correct") == bool(is_correct) for verdict, is_correct in pairs) / len(pairs)


def band_table(block: dict[str, Any]) -> str:
    low, high = block["band"]
    decided = block["step_accuracy_decided"]
    rows = [("labelled steps", block["labelled_steps"]),
            ("uncertain", f"{block['uncertain_steps']} ({block['uncertain_share']:.1%})"),
            (f"step accuracy, every step at threshold {block['threshold']}",
             f"{block['step_accuracy_at_threshold']:.1f}"),
            ("step accuracy of the decided steps", "n/a" if decided is None else f"{decided:.1f}")]
    rows += [(f"{kind.replace('_', ' ')}: correct / uncertain / wrong",
              " / ".join(str(block["verdicts"][kind][v]) for v in VERDICTS))
             for kind in ("correct_steps", "wrong_steps")]
    return f"Uncertain band [{low}, {high})\n\n" + table(("", "value"), rows)


def extend(metrics: dict[str, Any], text: str, benchmark: str, pairs: Sequence[tuple], band: Band | None,
           threshold: float | None) -> tuple[dict[str, Any], str]:
    """The metrics and their table, with the band's block when a band is set."""
    if band is None:
        return metrics, text
    block = band_report(benchmark, pairs, band, 0.5 if threshold is None else threshold)
    return {**metrics, "uncertain_band": block}, text + "\n\n" + band_table(block)
