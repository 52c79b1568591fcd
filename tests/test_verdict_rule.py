"""The uncertain band: verdicts, the first-error logic, early stop and how results show it."""

import json

import pytest

from rprm_lite.config import ScoreConfig, parse_band
from rprm_lite.errors import InputError
from rprm_lite.output import format_table, to_json_line
from rprm_lite.scoring import Scorer
from rprm_lite.verdict_rule import step_verdict

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]
FAST = dict(k=2, max_tokens=4, seed=5)


@pytest.mark.parametrize(("score", "band", "expected"), [
    (0.39, (0.4, 0.6), "wrong"), (0.4, (0.4, 0.6), "uncertain"), (0.5, (0.4, 0.6), "uncertain"),
    (0.59, (0.4, 0.6), "uncertain"), (0.6, (0.4, 0.6), "correct"), (0.49, None, "wrong"), (0.5, None, "correct"),
    (0.49, (0.5, 0.5), "wrong"), (0.5, (0.5, 0.5), "correct"),  # a band of width 0 is no band
])
def test_step_verdict(score, band, expected):
    assert step_verdict(score, 0.5, band) == expected


def test_band_values_are_checked():
    assert parse_band("0.4,0.6") == (0.4, 0.6)
    for text in ("0.4", "a,b", "0.1,0.2,0.3"):
        with pytest.raises(InputError, match="expected LOW,HIGH"):
            parse_band(text)
    with pytest.raises(InputError, match=r"must hold the threshold 0.5"):
        ScoreConfig(uncertain_band=(0.6, 0.8))
    with pytest.raises(InputError, match=r"0 <= LOW <= HIGH <= 1, got 0.7,0.3"):
        ScoreConfig(uncertain_band=(0.7, 0.3))
    with pytest.raises(InputError, match="two finite numbers"):
        ScoreConfig(uncertain_band=(0.4, float("nan")))
    assert ScoreConfig(uncertain_band=[0.4, 0.6]).uncertain_band == (0.4, 0.6)  # a JSON list is fine


def test_band_verdicts_first_error_and_first_uncertain_step(small_bpe_gguf):
    with Scorer(small_bpe_gguf, ScoreConfig(**FAST, all_steps=True)) as scorer:
        plain = scorer.score(QUESTION, STEPS)
    low, mid, high = sorted(plain.scores)
    order = {score: step.index for step, score in zip(plain.steps, plain.scores, strict=True)}
    band = ((low + mid) / 2, high)  # low is below the band, mid inside it, high at its top (correct)
    with Scorer(small_bpe_gguf, ScoreConfig(**FAST, all_steps=True, threshold=mid, uncertain_band=band)) as scorer:
        banded = scorer.score(QUESTION, STEPS)
    assert banded.scores == plain.scores
    verdicts = {step.index: step.verdict for step in banded.steps}
    assert (verdicts[order[low]], verdicts[order[mid]], verdicts[order[high]]) == ("wrong", "uncertain", "correct")
    assert banded.first_error_step == order[low] and banded.first_uncertain_step == order[mid]


def test_an_uncertain_step_does_not_stop_scoring(small_bpe_gguf):
    with Scorer(small_bpe_gguf, ScoreConfig(**FAST, uncertain_band=(0.0, 1.0))) as scorer:  # early stop on
        result = scorer.score(QUESTION, STEPS)
    assert [s.verdict for s in result.steps] == ["uncertain"] * 3
    assert result.first_error_step is None and result.first_uncertain_step == 1
    table = format_table(result, tuple(STEPS))
    assert f"solution {result.id}: no wrong step among 3 scored; not sure about steps 1, 2, 3; " in table
    assert "   1  " in table and "uncertain" in table.splitlines()[2]
    data = json.loads(to_json_line(result, critiques=False))
    assert data["first_uncertain_step"] == 1 and data["config"]["uncertain_band"] == [0.0, 1.0]


def test_without_a_band_the_json_has_no_new_keys(small_bpe_gguf):
    with Scorer(small_bpe_gguf, ScoreConfig(**FAST), prefix_cache=False) as scorer:  # prefix_tokens: its own test
        data = json.loads(to_json_line(scorer.score(QUESTION, STEPS), critiques=False))
    assert list(data) == ["id", "steps", "first_error_step", "solution_score", "config"]
    assert list(data["steps"][0]) == ["index", "score", "p_yes", "verdict", "fallbacks", "generated_tokens",
                                      "prompt_tokens", "reused_tokens"]
    assert "uncertain_band" not in data["config"] and "calibration" not in data["config"]
