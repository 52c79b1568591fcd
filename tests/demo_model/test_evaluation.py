"""The recipe's evaluation table: ProcessBench F1, per-kind error accuracy, paired bootstrap intervals."""

from __future__ import annotations

from rprm_lite.demo_model.evaluation import interval, per_kind, report, scores

# 4 items with an error (one of each kind) and 4 without
GOOD = [("arithmetic", True), ("copy", True), ("operation", True), ("contradiction", False)] + [(None, True)] * 4
POOR = [("arithmetic", False), ("copy", False), ("operation", True), ("contradiction", False)] + [(None, True)] * 4


def test_scores_follow_processbench_and_split_by_kind():
    assert scores(GOOD) == (75.0, 100.0, 2 * 75 * 100 / 175)
    assert per_kind(POOR) == {"arithmetic": 0.0, "copy": 0.0, "operation": 100.0, "contradiction": 0.0}
    assert scores([(None, True)]) == (0.0, 100.0, 0.0)


def test_report_has_a_row_per_model_and_judges_differences_on_paired_resamples():
    many_good, many_poor = GOOD * 20, POOR * 20
    text = report({"SFT K=1": many_poor, "DPO K=1": many_good, "DPO K=2": many_good},
                  [("DPO K=1", "SFT K=1"), ("DPO K=2", "DPO K=1")])
    rows = [line for line in text.splitlines() if line.startswith("| DPO") or line.startswith("| SFT")]
    assert len(rows) == 3
    assert rows[1].startswith("| DPO K=1 | 75.0 | 100.0 | 85.7 [") and rows[1].endswith("| 100 / 100 / 100 / 0 |")
    assert "F1 DPO K=1 - SFT K=1: +45.7" in text and "beyond the noise" in text
    # identical outcomes: a difference of exactly zero on every resample is within the noise
    assert "F1 DPO K=2 - DPO K=1: +0.0 (paired 95% interval [+0.0, +0.0]): within the noise" in text
    assert interval(list(range(100))) == (2, 96)


def test_report_text():
    text = report({"SFT K=1": POOR * 5, "DPO K=1": GOOD * 5}, [("DPO K=1", "SFT K=1")])
    assert text == (
        "| model | error acc | correct acc | F1 [95% interval] | error acc per kind (arith / copy / op / contra) |\n"
        "|---|---:|---:|---:|---|\n"
        "| SFT K=1 | 25.0 | 100.0 | 40.0 [11.8, 62.1] | 0 / 0 / 100 / 0 |\n"
        "| DPO K=1 | 75.0 | 100.0 | 85.7 [70.0, 96.8] | 100 / 100 / 100 / 0 |\n"
        "\n"
        "- F1 DPO K=1 - SFT K=1: +45.7 (paired 95% interval [+23.9, +71.6]): beyond the noise\n")
