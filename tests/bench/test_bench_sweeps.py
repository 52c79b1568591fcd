"""Threshold sweep and K-scaling from recorded predictions, and their plots."""

from __future__ import annotations

import pytest

from rprm_lite.bench import sweeps
from rprm_lite.bench.harness import run_items
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.labelled import prmbench, processbench
from rprm_lite.labelled.records import Prediction


@pytest.fixture
def pairs(tmp_path, processbench_dir, fake_scorer, processbench_p_yes):
    items = processbench.load_processbench(processbench_dir, ["gsm8k", "math"])
    summary = run_items([i.bench_item() for i in items], fake_scorer(processbench_p_yes), tmp_path / "run",
                        benchmark="processbench")
    predictions, _ = processbench.parse_predictions(summary.records, where="run")
    return processbench.select(items, predictions)


def test_threshold_sweep_matches_hand_computed_f1(pairs):
    rows = sweeps.threshold_sweep(pairs, processbench.evaluate, processbench.headline)
    assert [row["threshold"] for row in rows] == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55,
                                                  0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert [row["average"] for row in rows] == [0, 0, 50, 50, 50, 100, 100, 50, 50, 50, 50, 50, 0, 0, 0, 0, 0,
                                                0, 0]
    assert [row["gsm8k"] for row in rows][4:8] == [0, 100, 100, 0]  # gsm8k-0's .25 and gsm8k-1's .375


def test_threshold_sweep_notes_thresholds_that_early_stop_cannot_decide(tmp_path, processbench_dir, fake_scorer,
                                                                        processbench_p_yes):
    items = processbench.load_processbench(processbench_dir, ["gsm8k", "math"])
    scorer = fake_scorer(processbench_p_yes, ScoreConfig(k=2, threshold=0.5, all_steps=False))
    records = run_items([i.bench_item() for i in items], scorer, tmp_path / "run", benchmark="processbench").records
    assert records[0]["steps"][2]["score"] is None  # gsm8k-0 stopped at its wrong step 2
    early = processbench.select(items, processbench.parse_predictions(records, where="run")[0])
    rows = sweeps.threshold_sweep(early, processbench.evaluate, processbench.headline, thresholds=(0.2, 0.5))
    assert "no step below 0.2" in rows[0]["note"] and "average" not in rows[0]
    assert rows[1] == {"threshold": 0.5, "gsm8k": 0.0, "math": 100.0, "average": 50.0}


def test_k_scaling_uses_every_recorded_critique_at_the_recorded_k(pairs):
    result = sweeps.k_scaling(pairs, processbench.evaluate, processbench.headline, threshold=0.5, draws=3)
    assert (result["recorded_k"], result["skipped_ks"]) == (2, [4, 8, 16])
    k1, k2 = result["rows"]
    assert (k1["k"], k1["draws"], k2["k"], k2["draws"]) == (1, 3, 2, 1)
    assert k2["average"] == {"mean": 50.0, "min": 50.0, "max": 50.0}
    assert k1["average"]["min"] <= k1["average"]["mean"] <= k1["average"]["max"]


def test_k_scaling_with_agreeing_critiques_does_not_depend_on_k():
    item = processbench.ProcessBenchItem(id="a", subset="gsm8k", problem="q", steps=("x", "y"), label=1)
    good = processbench.ProcessBenchItem(id="b", subset="gsm8k", problem="q", steps=("x",), label=-1)
    pairs = [(item, Prediction(id="a", scores=(0.75, 0.25), p_yes=((0.75,) * 4, (0.25,) * 4))),
             (good, Prediction(id="b", scores=(0.75,), p_yes=((0.75,) * 4,)))]
    result = sweeps.k_scaling(pairs, processbench.evaluate, processbench.headline, threshold=0.5, ks=(1, 2, 4))
    assert [(row["k"], row["average"]) for row in result["rows"]] == [
        (1, {"mean": 100.0, "min": 100.0, "max": 100.0}), (2, {"mean": 100.0, "min": 100.0, "max": 100.0}),
        (4, {"mean": 100.0, "min": 100.0, "max": 100.0})]


def test_k_scaling_needs_per_critique_p_yes():
    it = prmbench.PRMBenchItem(id="circular_p0", classification="circular", question="q", steps=("a",),
                               error_steps=frozenset())
    with pytest.raises(InputError, match="K-scaling needs each critique's p_yes"):
        sweeps.k_scaling([(it, Prediction(id="circular_p0", scores=(0.5,)))], prmbench.evaluate,
                          prmbench.headline, threshold=0.5)
    with pytest.raises(InputError, match="a threshold sweep needs per-step scores"):
        sweeps.without_fixed_labels([(it, Prediction(id="circular_p0", labels=(True,)))])


def test_plots_are_written_as_png(tmp_path, pairs):
    rows = sweeps.threshold_sweep(pairs, processbench.evaluate, processbench.headline)
    k_rows = sweeps.k_scaling(pairs, processbench.evaluate, processbench.headline, threshold=0.5, draws=2)
    threshold_png = sweeps.plot_threshold(rows, tmp_path / "plots" / "t.png", title="t", ylabel="F1")
    k_png = sweeps.plot_k_scaling(k_rows, tmp_path / "plots" / "k.png", title="k", ylabel="F1")
    for path in (threshold_png, k_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
