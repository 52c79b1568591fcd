"""The released verdict mode: the released code's cleaning, and P(Yes) read in a second pass.

Random weights write gibberish, so critiques are scripted (a sampler that emits fixed tokens);
the decoding, the cleaning, the re-tokenizing and the logits reading stay real.
"""

import pytest
from test_scoring import fresh_p_yes

from rprm_lite import verdict
from rprm_lite.config import RESUME_KEYS, ScoreConfig, changed_settings
from rprm_lite.engine import DEFAULT_N_BATCH
from rprm_lite.errors import ContextOverflowError, InputError
from rprm_lite.prompt import FALLBACK_TEXT, render
from rprm_lite.scoring import Scorer
from rprm_lite.solution import Solution
from rprm_lite.verdict import clean_critique, verdict_text

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]
# as a model may write it: literal backslash-n pairs, spaces around them, a real newline, text after the verdict
RAW = ("  \\n Analysis:\\n  The step adds 3 and 4.  \\n\\n 3 + 4 = 7 is right. \n"
       "  Verification: Is the step correct (Yes/No)? Yes\\n  ")
CLEANED = ("Analysis:\nThe step adds 3 and 4.\n\n3 + 4 = 7 is right.\n"
           "Verification: Is the step correct (Yes/No)? Yes")
CUT = "Analysis:\nThe step adds 3 and 4.\n\n3 + 4 = 7 is right.\nVerification: Is the step correct (Yes/No)?"
NO_PHRASE = " The step looks fine.\\n  3 + 4 = 7 \\n"


def test_cleaning_is_the_released_code_byte_for_byte():
    assert clean_critique(RAW) == CLEANED
    assert verdict_text(CLEANED) == CUT
    assert clean_critique(NO_PHRASE) == "The step looks fine.\n3 + 4 = 7"
    assert verdict_text("The step looks fine.") == "The step looks fine." + FALLBACK_TEXT
    # .strip("\\n") strips a character set, so leading and trailing letters n go too, as in the released code
    assert clean_critique("now the explanation") == "ow the explanatio"
    assert clean_critique("a\\\\nb \n\n c") == "a\\\nb\n\nc"  # "\\\\n" splits there too, as in the released code


class ScriptedSampler:
    """Stream i writes `scripts[i]` (streams are made in order), then ends its critique."""

    scripts: list[list[int]] = []
    made = 0

    def __init__(self, **_):
        self.queue = list(ScriptedSampler.scripts[ScriptedSampler.made % len(ScriptedSampler.scripts)])
        ScriptedSampler.made += 1

    def sample(self, engine, row):
        return self.queue.pop(0) if self.queue else engine.tokenize("<|im_end|>", special=True)[0]

    def close(self):
        pass


def scripted_scores(model, verdict, critiques, steps=STEPS[:1]):
    with Scorer(model, ScoreConfig(k=len(critiques), max_tokens=200, seed=1, verdict=verdict, all_steps=True)) as s:
        ScriptedSampler.scripts = [s.engine.tokenize(text, special=False) for text in critiques]
        ScriptedSampler.made = 0
        s.make_sampler = ScriptedSampler
        return s.score(QUESTION, steps)


@pytest.mark.parametrize("style, one_per_batch", [("r-prm-eval", False), ("chatml", False), ("r-prm-eval", True)])
def test_released_p_yes_equals_a_fresh_decode_of_prompt_plus_cleaned_critique(tiny_gguf, monkeypatch, style,
                                                                               one_per_batch):
    if one_per_batch:  # as when the free cells hold one critique at a time
        groups = verdict._groups
        monkeypatch.setattr(verdict, "_groups", lambda runs, room: groups(runs, room=max(
            len(tokens) - keep for _, keep, tokens in runs)))
    config = ScoreConfig(k=2, max_tokens=200, seed=1, verdict="released", prompt_style=style)
    with Scorer(tiny_gguf, config) as s:
        ScriptedSampler.scripts = [s.engine.tokenize(text, special=False) for text in (RAW, NO_PHRASE)]
        ScriptedSampler.made = 0
        s.make_sampler = ScriptedSampler
        step = s.score(QUESTION, STEPS[:1]).steps[0]
        prompt_text = render(Solution.create(QUESTION, STEPS[:1]), 0, style).text
        # the released script: prompt + cut critique as one string, tokenized afresh (no markers in the critique)
        with_phrase = s.engine.tokenize(prompt_text + CUT, special=True)
        fallback = s.engine.tokenize(prompt_text + "The step looks fine.\n3 + 4 = 7" + FALLBACK_TEXT, special=True)
    assert step.fallbacks == 1  # the second critique has no verdict phrase
    assert step.p_yes[0] == pytest.approx(fresh_p_yes(tiny_gguf, with_phrase, n_batch=DEFAULT_N_BATCH), abs=1e-4)
    assert step.p_yes[1] == pytest.approx(fresh_p_yes(tiny_gguf, fallback, n_batch=DEFAULT_N_BATCH), abs=1e-4)
    assert step.score == pytest.approx(sum(step.p_yes) / 2)


def test_both_modes_sample_the_same_critiques_and_read_them_differently(tiny_gguf):
    single = scripted_scores(tiny_gguf, "single-pass", [RAW])
    released = scripted_scores(tiny_gguf, "released", [RAW])
    assert single.steps[0].critiques == released.steps[0].critiques  # the sampled text, with its verdict
    assert single.steps[0].generated_tokens == released.steps[0].generated_tokens
    assert abs(single.steps[0].p_yes[0] - released.steps[0].p_yes[0]) > 1e-3  # other tokens, other logits
    assert released.config["verdict"] == "released" and single.config["verdict"] == "single-pass"


def test_released_mode_with_kv_reuse_across_steps_matches_no_reuse(tiny_gguf):
    config = ScoreConfig(k=2, max_tokens=4, temperature=0, all_steps=True, verdict="released")
    with Scorer(tiny_gguf, config) as reuse, Scorer(tiny_gguf, config.replace(kv_reuse=False)) as full:
        a, b = reuse.score(QUESTION, STEPS), full.score(QUESTION, STEPS)
    assert [s.reused_tokens > 400 for s in a.steps] == [False, True, True]
    assert [s.score for s in a.steps] == pytest.approx([s.score for s in b.steps], abs=2e-3)


def test_critiques_are_batched_while_they_fit_and_one_too_long_is_a_clear_error():
    runs = [(1, 0, [0] * 5), (2, 2, [0] * 7), (3, 0, [0] * 6)]
    assert verdict._groups(runs, room=10) == [runs[:2], runs[2:]]
    with pytest.raises(ContextOverflowError, match="needs 6 new tokens for one critique, but the context has 5"):
        verdict._groups(runs, room=5)


def test_verdict_setting_is_checked_and_decides_resuming():
    assert ScoreConfig().verdict == "single-pass" and ScoreConfig(verdict="released").to_dict()["verdict"] == "released"
    with pytest.raises(InputError, match="verdict must be one of single-pass, released, got 'two-pass'"):
        ScoreConfig(verdict="two-pass")
    assert "verdict" in RESUME_KEYS
    now = ScoreConfig(verdict="released").to_dict()
    assert changed_settings({**now, "verdict": "single-pass"}, now) == [
        "verdict: 'single-pass' before, 'released' now"]
    older = {key: value for key, value in ScoreConfig().to_dict().items() if key != "verdict"}
    assert changed_settings(older, ScoreConfig().to_dict()) == []  # made before the setting existed
