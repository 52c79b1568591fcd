"""The stopping rules of adaptive K on hand-made sequences, and adaptive scoring on tiny models.

Expected stopping points are worked out by hand: with a uniform prior, n Yes votes of n give
P(mean > 1/2) = 1 - 2^-(n+1) (0.875 at n=2, 0.9375 at n=3, 0.96875 at n=4); the betting sequence on all-1
values at t = 1/2 multiplies its capital by 1.75 per value (bets truncated at 3/4 / t = 1.5), so it
needs 1.75^n >= 2 / (1 - c); the window rule needs its last w = ceil(log2(1 / (1 - c))) values on one side.
"""

import math

import numpy as np
import pytest

from rprm_lite import adaptive
from rprm_lite.adaptive import ABOVE, BELOW, UNSETTLED, beta_cdf, decide, window_length
from rprm_lite.config import ScoreConfig, changed_settings
from rprm_lite.errors import InputError
from rprm_lite.prompt import FALLBACK_TEXT
from rprm_lite.scoring import Scorer
from shared_paths import TINY_RPRM


def first_stop(values, **rule):
    """The first n at which the rule settles values[:n], with the side; None when it never does."""
    for n in range(1, len(values) + 1):
        side = decide(values[:n], threshold=0.5, **rule)
        if side != UNSETTLED:
            return n, side
    return None


@pytest.mark.parametrize(("confidence", "stop"), [(0.8, 2), (0.9, 3), (0.95, 4), (0.99, 6)])
def test_beta_rule_stops_unanimous_votes_where_the_posterior_reaches_the_confidence(confidence, stop):
    assert first_stop([1.0] * 10, rule="beta", confidence=confidence) == (stop, ABOVE)
    assert first_stop([0.0] * 10, rule="beta", confidence=confidence) == (stop, BELOW)


def test_beta_rule_on_mixed_votes_and_fractional_values():
    # 1,1,0 then Yes: Beta(1+s, 1+n-s); at n=6 with 5 Yes P(mean > 1/2) = 1 - P(Bin(7, 1/2) >= 6) = 0.9375
    assert first_stop([1, 1, 0, 1, 1, 1, 1, 1, 1, 1], rule="beta", confidence=0.9) == (6, ABOVE)
    assert first_stop([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], rule="beta", confidence=0.9) is None
    # P(Yes) values count as fractional votes: four values of 0.9 are S = 3.6 of n = 4
    expected = 1 - beta_cdf(0.5, np.array([4.6]), np.array([1.4]))[0]
    assert expected == pytest.approx(0.9268, abs=1e-4)
    assert decide([0.9] * 4, rule="beta", threshold=0.5, confidence=0.9) == ABOVE
    assert decide([0.9] * 4, rule="beta", threshold=0.5, confidence=0.95) == UNSETTLED


def test_beta_cdf_matches_binomial_tails():
    # I_x(a, b) = P(Binomial(a + b - 1, x) >= a) for whole a, b
    for x in (0.1, 0.5, 0.61, 0.9):
        for a in range(1, 8):
            for b in range(1, 8):
                n = a + b - 1
                tail = sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))
                assert beta_cdf(x, np.array([a]), np.array([b]))[0] == pytest.approx(tail, abs=1e-12)


@pytest.mark.parametrize(("confidence", "stop"), [(0.6, 3), (0.8, 5), (0.9, 6), (0.95, 7)])
def test_betting_rule_on_constant_values(confidence, stop):
    assert first_stop([1.0] * 10, rule="betting", confidence=confidence) == (stop, ABOVE)
    assert first_stop([0.0] * 10, rule="betting", confidence=confidence) == (stop, BELOW)
    # by hand: the first n with 1.75^n >= 2 / (1 - c)
    assert stop == math.ceil(math.log(2 / (1 - confidence)) / math.log(1.75))


def test_betting_rule_is_slower_on_values_near_the_threshold():
    # all-1 values settle at 5 (above); values closer to t earn less per bet
    assert first_stop([0.95] * 10, rule="betting", confidence=0.8) == (5, ABOVE)
    assert first_stop([0.7] * 10, rule="betting", confidence=0.8) == (9, ABOVE)
    assert first_stop([0.6] * 10, rule="betting", confidence=0.8) is None


def test_window_rule_needs_its_last_w_values_on_one_side():
    assert [window_length(c) for c in (0.8, 0.9, 0.95, 0.99)] == [3, 4, 5, 7]
    assert first_stop([1, 0, 1, 1, 1, 1, 0, 0], rule="window", confidence=0.9) == (6, ABOVE)
    assert first_stop([0.6, 0.2, 0.1, 0.4, 0.3], rule="window", confidence=0.9) == (5, BELOW)
    assert first_stop([1, 0] * 5, rule="window", confidence=0.8) is None


@pytest.mark.parametrize("rule", adaptive.RULES)
def test_confidence_one_never_settles(rule):
    assert first_stop([1.0] * 50, rule=rule, confidence=1.0) is None


def test_rules_are_vectorized_row_by_row():
    rows = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=float)
    for rule in adaptive.RULES:
        got = adaptive.settled(rows, rule=rule, threshold=0.5, confidence=0.9)
        assert got.tolist() == [decide(list(row), rule=rule, threshold=0.5, confidence=0.9) for row in rows]
    assert adaptive.settled(rows, rule="beta", threshold=0.5, confidence=0.9).tolist() == [ABOVE, BELOW, UNSETTLED]


def test_config_checks_adaptive_settings_and_keeps_them_out_of_outputs_when_off():
    with pytest.raises(InputError, match=r"confidence must be in \(0.5, 1\]"):
        ScoreConfig(adaptive=True, confidence=0.3)
    with pytest.raises(InputError, match="wave must be between 1 and 255"):
        ScoreConfig(wave=0)
    with pytest.raises(InputError, match="adaptive_rule must be one of beta, betting, window"):
        ScoreConfig(adaptive_rule="vote")
    assert "adaptive" not in ScoreConfig().to_dict() and "confidence" not in ScoreConfig().to_dict()
    on = ScoreConfig(adaptive=True).to_dict()
    assert {name: on[name] for name in ("adaptive", "confidence", "wave", "adaptive_rule")} == {
        "adaptive": True, "confidence": 0.8, "wave": 2, "adaptive_rule": "beta"}
    # a run made with adaptive K is not resumed without it, nor at another confidence
    assert changed_settings(on, ScoreConfig().to_dict()) == ["adaptive: True before, False now"]
    assert changed_settings(on, ScoreConfig(adaptive=True, confidence=0.9).to_dict()) == [
        "confidence: 0.8 before, 0.9 now"]
    assert changed_settings(ScoreConfig().to_dict(), ScoreConfig().to_dict()) == []
    # the threshold decides where adaptive K stops, so it decides the scores even with every step scored
    assert changed_settings({**on, "all_steps": True}, {**on, "all_steps": True, "threshold": 0.6}) == [
        "threshold: 0.5 before, 0.6 now"]


# -- adaptive scoring on the tiny random-weight model ---------------------------------------------
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]
TINY = dict(k=5, max_tokens=6, seed=7, all_steps=True, adaptive=True)


def score(model, **settings):
    with Scorer(model, ScoreConfig(**{**TINY, **settings})) as scorer:
        return scorer.score(QUESTION, STEPS)


def test_threshold_zero_settles_every_step_after_the_first_wave(tiny_gguf):
    # every value is >= 0, so P(mean > 0) = 1 at once; threshold 1 settles the other way
    for threshold, verdict in ((0.0, "correct"), (1.0, "wrong")):
        result = score(tiny_gguf, threshold=threshold, wave=2)
        assert [(s.critiques_used, s.stop_reason, len(s.p_yes), s.verdict) for s in result.steps] == [
            (2, "settled", 2, verdict)] * 3
        assert all(s.score == sum(s.p_yes) / 2 for s in result.steps)


def test_adaptive_runs_are_reproducible_and_report_their_stops(tiny_gguf):
    first, again = score(tiny_gguf, confidence=0.8, wave=2), score(tiny_gguf, confidence=0.8, wave=2)
    assert first.to_dict() == again.to_dict()
    for step in first.to_dict()["steps"]:
        assert step["critiques_used"] == len(step["p_yes"]) and step["stop_reason"] in ("settled", "reached-k")
        assert step["critiques_used"] in (2, 4, 5)
    assert first.config["adaptive"] is True and first.config["wave"] == 2


def test_fixed_k_output_has_no_adaptive_fields(tiny_gguf):
    data = score(tiny_gguf, adaptive=False).to_dict()
    assert all("critiques_used" not in s and "stop_reason" not in s for s in data["steps"])
    assert not {"adaptive", "confidence", "wave", "adaptive_rule"} & data["config"].keys()


# llama.cpp's CPU decode is bit-identical for a sequence whatever else shares its batch only while the
# batch stays small: measured on the tiny R-PRM (tests/models, Q8_0), single-token batches of up to 10 sequences and
# multi-token batches of up to 45 tokens gave identical logits, a 60-token batch (the fallback question of
# 4 critiques at once) logits up to 0.037 apart. So with that model the critique texts are the same
# in waves and at once, and so is each P(Yes) read at the verdict phrase; a P(Yes) read after the fallback
# question moved by up to 0.019 (examples/solution.json, K=10, waves of 1, 2 and 3).
FALLBACK_TOLERANCE = 0.05


def test_confidence_one_equals_fixed_k_on_the_tiny_rprm():
    from rprm_lite.solution import read_solutions

    solution = read_solutions("examples/solution.json")[0]
    settings = dict(k=4, seed=0, threads=1, all_steps=True, max_tokens=512)
    with Scorer(TINY_RPRM, ScoreConfig(**settings)) as scorer:
        fixed = scorer.score_solution(solution)
    with Scorer(TINY_RPRM, ScoreConfig(**settings, adaptive=True, confidence=1.0, wave=3)) as scorer:
        waves = scorer.score_solution(solution)
    for a, b in zip(fixed.steps, waves.steps, strict=True):
        assert a.critiques == b.critiques and b.critiques_used == 4 and b.stop_reason == "reached-k"
        assert a.generated_tokens == b.generated_tokens and a.fallbacks == b.fallbacks
        for text, p, q in zip(a.critiques, a.p_yes, b.p_yes, strict=True):
            if FALLBACK_TEXT.strip() in text:  # the fallback question (a multi-token decode)
                assert q == pytest.approx(p, abs=FALLBACK_TOLERANCE)
            else:
                assert q == p
        assert b.verdict == a.verdict


def test_adaptive_with_the_released_verdict_reads_each_wave_in_a_second_pass(tiny_gguf):
    single = score(tiny_gguf, threshold=0.0, wave=2)
    released = score(tiny_gguf, threshold=0.0, wave=2, verdict="released")
    for a, b in zip(single.steps, released.steps, strict=True):
        assert (b.critiques_used, b.stop_reason, len(b.p_yes)) == (2, "settled", 2)
        assert a.critiques == b.critiques  # the same sampled critiques ...
        assert all(0 <= p <= 1 for p in b.p_yes)
    # ... read again the released way (a step whose re-tokenized critique is unchanged reads the same)
    assert any(a.p_yes != b.p_yes for a, b in zip(single.steps, released.steps, strict=True))
