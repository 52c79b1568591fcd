"""The verdict-modes benchmark's comparison, on hand-made results (the model run is a benchmark, not a test)."""

from __future__ import annotations

import pytest

from rprm_lite.bench.verdict_modes import cleaning_changes, compare, markdown
from rprm_lite.labelled.processbench import ProcessBenchItem
from rprm_lite.prompt import FALLBACK_TEXT
from rprm_lite.results import SolutionResult, StepResult

PHRASE = " Is the step correct (Yes/No)?"
ITEMS = [ProcessBenchItem(id="a", subset="gsm8k", problem="q", steps=("s1", "s2"), label=1),
         ProcessBenchItem(id="b", subset="gsm8k", problem="q", steps=("s1",), label=-1)]
CRITIQUES = {  # per item, per step: the shown critique texts (the same in both modes)
    "a": [("Fine.\nVerification:" + PHRASE + " Yes", "Fine.\\n  ok." + PHRASE + " No"),
          ("Hm, x" + FALLBACK_TEXT + " No", "Wrong." + PHRASE + " No")],
    "b": [("Fine." + PHRASE + " Yes", "Fine." + PHRASE + " Yes")],
}


def results(p_yes):
    made = []
    for item in ITEMS:
        steps = tuple(StepResult(index=i + 1, score=sum(p) / 2, p_yes=p, verdict="correct", critiques=c)
                      for i, (p, c) in enumerate(zip(p_yes[item.id], CRITIQUES[item.id], strict=True)))
        made.append(SolutionResult(id=item.id, steps=steps, first_error_step=None, solution_score=None))
    return made


def test_cleaning_changes_only_what_the_released_code_would_clean():
    assert [cleaning_changes(c) for pair in CRITIQUES["a"] for c in pair] == [False, True, False, False]
    assert cleaning_changes("  Fine." + FALLBACK_TEXT + " Yes")


def test_compare_reports_differences_flips_f1_and_time():
    single = results({"a": [(0.75, 0.5), (0.25, 0.5)], "b": [(1.0, 1.0)]})  # a: first error at step 2
    released = results({"a": [(0.75, 0.25), (0.5, 0.5)], "b": [(1.0, 1.0)]})  # a: no step below 0.5
    report = compare(ITEMS, {"single-pass": single, "released": released},
                     {"single-pass": 2.0, "released": 3.0}, 0.5)
    assert report["p_yes_abs_diff"] == {
        "all": {"critiques": 6, "mean": pytest.approx(0.5 / 6), "max": 0.25},
        "cleaning changed": {"critiques": 1, "mean": 0.25, "max": 0.25},
        "cleaning changed nothing": {"critiques": 5, "mean": 0.05, "max": 0.25},
        "fallback question": {"critiques": 1, "mean": 0.25, "max": 0.25},
    }
    assert (report["steps"], report["verdict_flip_share"], report["critique_mismatches"]) == (3, 1 / 3, 0)
    assert report["f1"] == {"single-pass": 100.0, "released": 0.0} and report["f1_change"] == -100.0
    assert (report["extra_seconds"], report["released_time_ratio"]) == (1.0, 1.5)
    text = markdown({"data": "d", "model": "m.gguf", "settings": {"k": 2, "seed": 0, "threshold": 0.5},
                     "comparison": report})
    assert "| ProcessBench F1 (average) | 100.0 | 0.0 | -100.0 |" in text
    assert "| steps whose verdict flips (of 3) |  |  | 33.3% |" in text
    assert "| scoring seconds | 2.0 | 3.0 | +1.0 (1.50x) |" in text
