"""Reading the verdict of a critique, and deciding whether it agrees with a step's label.

A critique ends with "Verification: Is the step correct (Yes/No)? X". The last occurrence of the
phrase counts (a critique may quote it earlier). The text kept for training is cut right after the
verdict and written as the phrase, one space and the word, the form whose " Yes" / " No" token
the runtime reads P(Yes) from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from rprm_lite.prompt import VERDICT_PHRASE

# after the phrase: spaces, optional markdown emphasis or quotes, then the word
_VERDICT_AFTER_PHRASE = re.compile(r"\s*[*_\"'`]*\s*(Yes|No)\b")


class DropReason(str, Enum):
    EMPTY = "empty"
    NO_VERDICT = "no_verdict"
    WRONG_VERDICT = "wrong_verdict"


@dataclass(frozen=True)
class Verdict:
    says_correct: bool
    text: str  # the critique cut right after its verdict, in canonical form

    @property
    def word(self) -> str:
        return "Yes" if self.says_correct else "No"


def find_verdict(critique: str) -> Verdict | None:
    """The final verdict of a critique, or None when it never writes "... (Yes/No)? Yes|No"."""
    at = critique.rfind(VERDICT_PHRASE)
    if at < 0:
        return None
    phrase_end = at + len(VERDICT_PHRASE)
    match = _VERDICT_AFTER_PHRASE.match(critique, phrase_end)
    if match is None:
        return None
    word = match.group(1)
    return Verdict(says_correct=word == "Yes", text=f"{critique[:phrase_end]} {word}")


@dataclass(frozen=True)
class Judged:
    """A critique checked against a label: `verdict` is None when there is none to read."""

    critique: str
    verdict: Verdict | None
    drop_reason: DropReason | None

    @property
    def kept(self) -> bool:
        return self.drop_reason is None


def judge(critique: str, *, step_correct: bool) -> Judged:
    """Keep a critique only if it ends in a verdict that agrees with the step's label."""
    if not critique.strip():
        return Judged(critique, None, DropReason.EMPTY)
    verdict = find_verdict(critique)
    if verdict is None:
        return Judged(critique, None, DropReason.NO_VERDICT)
    if verdict.says_correct != step_correct:
        return Judged(critique, verdict, DropReason.WRONG_VERDICT)
    return Judged(critique, verdict, None)
