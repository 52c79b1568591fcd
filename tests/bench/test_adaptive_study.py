"""The trace-driven adaptive-K simulator on a tiny hand-made trace, with literal expected results."""

import json

import numpy as np
import pytest

from rprm_lite.bench import adaptive_study
from rprm_lite.bench.adaptive_study import Trace, prm_score, replay, vote_count
from rprm_lite.errors import InputError

# four steps of 6 votes; the first two steps are right, the last two wrong
VALUES = np.array([[1, 1, 1, 1, 1, 1],
                   [1, 0, 1, 1, 1, 1],
                   [0, 0, 0, 0, 0, 0],
                   [1, 0, 0, 0, np.nan, np.nan]])  # only 4 critiques recorded
IN_ORDER = np.tile(np.arange(6), (4, 1))


def test_replay_stops_each_step_where_the_rule_settles_in_recorded_order():
    # beta c=0.9 needs 3 unanimous votes, checked after each wave of 2: step 1 at 4, step 2 (1,0,1,1,1,1)
    # never before its last wave, step 3 at 4, step 4 runs out of critiques at 4
    used, scores = replay(VALUES, IN_ORDER, rule="beta", level=0.9, threshold=0.5, wave=2)
    assert used.tolist() == [4, 6, 4, 4]
    assert scores.tolist() == [1.0, 5 / 6, 0.0, 0.25]
    used, _ = replay(VALUES, IN_ORDER, rule="beta", level=0.9, threshold=0.5, wave=1)
    assert used.tolist() == [3, 6, 3, 4]
    used, scores = replay(VALUES, IN_ORDER, rule="fixed", level=2, threshold=0.5, wave=2)
    assert used.tolist() == [2, 2, 2, 2] and scores.tolist() == [1.0, 0.5, 0.0, 0.5]
    used, _ = replay(VALUES, IN_ORDER, rule="window", level=0.8, threshold=0.5, wave=1)  # w = 3
    assert used.tolist() == [3, 5, 3, 4]


def test_random_orders_keep_missing_critiques_last_and_are_seeded():
    orders = adaptive_study.random_orders(np.random.default_rng(0), VALUES)
    assert sorted(orders[3, :4].tolist()) == [0, 1, 2, 3] and sorted(orders[3, 4:].tolist()) == [4, 5]
    again = adaptive_study.random_orders(np.random.default_rng(0), VALUES)
    assert (orders == again).all()


def test_prm_score_pools_every_step():
    metric = prm_score(np.array([False, False, True, True]), threshold=0.5)
    # labels correct, correct, wrong, wrong: both F1s are 100
    assert metric(np.array([1.0, 0.8, 0.0, 0.25])) == 100.0
    # step 2 labelled wrong: F1 = 2/3 (tp 1, fn 1), negative F1 = 4/5 (tn 2, fn 1)
    assert metric(np.array([1.0, 0.5, 0.0, 0.25])) == pytest.approx(50 * 2 / 3 + 50 * 4 / 5)


def test_study_reports_critiques_used_and_loss_against_fixed_k(tmp_path):
    trace = Trace("hand-made", VALUES, prm_score(np.array([False, False, True, True]), 0.5), "PRMScore",
                  lambda scores: scores > 0.5)
    result = adaptive_study.study(trace, permutations=5, wave=2, threshold=0.5, seed=0,
                                  grid=(("beta", 0.9), ("fixed", 2), ("fixed", 6)))
    assert result["fixed_k_metric"] == 100.0 and result["k"] == 6 and result["recorded_mean"] == 5.5
    beta, fixed2 = result["rows"]  # fixed K=6 is every critique: left out
    assert [row["rule"] for row in result["rows"]] == ["beta", "fixed"]
    assert fixed2["critiques_mean"] == 2.0 and fixed2["share_of_k"] == pytest.approx(2 / 5.5)
    # steps 1 and 3 always stop at 4 and step 4 at 4; step 2 at 4 when its No vote is drawn in waves 3
    assert 4.0 <= beta["critiques_mean"] <= 4.5
    assert beta["loss"] == pytest.approx(100.0 - beta["metric_mean"])
    assert beta["verdicts_changed"] == 0.0
    # fixed K=2 scores step 2 at 0.5 (labelled wrong) when its No vote comes in the first two
    assert 0 < fixed2["verdicts_changed"] <= 0.5
    report = adaptive_study.run_study([trace], tmp_path, permutations=3, wave=2, threshold=0.5, seed=0)
    assert json.loads((tmp_path / "adaptive_study.json").read_text())["traces"][0]["steps"] == 4
    assert (tmp_path / "adaptive_study.png").stat().st_size > 0
    assert "| beta c=0.95 |" in (tmp_path / "adaptive_study.md").read_text()
    assert report["settings"]["permutations"] == 3


def test_vote_counts_of_released_shares():
    assert [vote_count(s) for s in (1.0, 0.0, 0.5, 0.3, 8 / 9, 0.875, 0.45)] == [10, 10, 10, 10, 9, 8, 20]
    with pytest.raises(InputError, match="not a vote share"):
        vote_count(0.123)
