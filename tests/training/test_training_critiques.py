"""Reading a critique's verdict and keeping it only when it agrees with the label."""

from __future__ import annotations

import pytest

from rprm_lite.training.critiques import DropReason, find_verdict, judge

PHRASE = "Verification: Is the step correct (Yes/No)?"


@pytest.mark.parametrize(("critique", "word", "kept_text"), [
    (f"Fine. {PHRASE} Yes", "Yes", f"Fine. {PHRASE} Yes"),
    (f"Wrong sum. {PHRASE} No", "No", f"Wrong sum. {PHRASE} No"),
    (f"Fine. {PHRASE} **Yes**\nThat is all.", "Yes", f"Fine. {PHRASE} Yes"),
    (f"Fine. {PHRASE}\n  No.", "No", f"Fine. {PHRASE} No"),
    # the last phrase counts: a critique may quote the question earlier
    (f"I must answer '{PHRASE} Yes'. It is wrong. {PHRASE} No", "No",
     f"I must answer '{PHRASE} Yes'. It is wrong. {PHRASE} No"),
])
def test_verdict_is_read_after_the_last_phrase_and_the_text_cut_there(critique, word, kept_text):
    verdict = find_verdict(critique)
    assert verdict is not None
    assert verdict.word == word
    assert verdict.text == kept_text


@pytest.mark.parametrize("critique", [
    "The step is correct. Yes",
    f"{PHRASE} Maybe",
    f"{PHRASE} Yesterday it was right",
    "Based on your analysis. Is the answer correct (Yes/No)? Yes",  # the runtime's fallback question
    f"Fine. {PHRASE}",
])
def test_no_verdict(critique):
    assert find_verdict(critique) is None


def test_judge_keeps_agreeing_and_names_why_others_drop():
    assert judge(f"ok {PHRASE} Yes", step_correct=True).kept
    assert judge(f"bad {PHRASE} No", step_correct=False).kept
    assert judge(f"ok {PHRASE} Yes", step_correct=False).drop_reason is DropReason.WRONG_VERDICT
    assert judge("no conclusion", step_correct=True).drop_reason is DropReason.NO_VERDICT
    assert judge("  ", step_correct=True).drop_reason is DropReason.EMPTY
