"""Typed results of scoring, and their JSON form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

# uncertain: see rprm_lite/verdict_rule.py; unread: a remote server's verdict held neither " Yes" nor " No"
# (rprm_lite/remote/scorer.py), so the step has no score
Verdict = Literal["correct", "wrong", "uncertain", "not scored", "unread"]
UNREAD: Final = "unread"
# StepResult fields left out of its JSON when None: the prefix cache's, adaptive K's, a calibration's, the calculator's
OPTIONAL_FIELDS = ("prefix_tokens", "critiques_used", "stop_reason", "raw_score", "calculated")


@dataclass(frozen=True)
class StepResult:
    """One step's verdict. `score` is the mean P(Yes) over the K critiques, None when not scored."""

    index: int  # 1-based
    score: float | None
    p_yes: tuple[float | None, ...]  # None: a remote critique whose P(Yes) was not read (the step is unread)
    verdict: Verdict
    fallbacks: int = 0  # critiques that ended without the verdict phrase and needed the fallback question
    generated_tokens: int = 0
    critiques: tuple[str, ...] = ()
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens already in the KV cache from the previous step
    # prompt tokens put back from the prefix cache (rprm_lite/prefix_cache.py) instead of decoded; None (and
    # then left out of the JSON, so results without it read as before) when none were
    prefix_tokens: int | None = None
    # adaptive K only (None otherwise, and then left out of the JSON): how many critiques were drawn
    # and why drawing stopped ("settled" by the stopping rule, or "reached-k")
    critiques_used: int | None = None
    stop_reason: str | None = None
    raw_score: float | None = None  # with a calibration: the mean P(Yes) that `score` maps (else not in JSON)
    # with the calculator on: per critique, the [start, end) character spans of its text that the calculator
    # wrote (rprm_lite/calculator.py); None (and not in the JSON) with it off
    calculated: tuple[tuple[tuple[int, int], ...], ...] | None = None

    def to_dict(self, *, critiques: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["p_yes"] = list(data["p_yes"])
        if critiques:
            data["critiques"] = list(data["critiques"])
        else:
            del data["critiques"], data["calculated"]
        if data.get("calculated") is not None:
            data["calculated"] = [[list(span) for span in spans] for spans in data["calculated"]]
        for name in OPTIONAL_FIELDS:
            if name in data and data[name] is None:
                del data[name]
        return data


@dataclass(frozen=True)
class SolutionResult:
    """One solution's result: its steps, the first wrong step and the solution score; `to_dict()` is the JSON
    object `rprm-lite score --json` prints, `config` every setting of the run."""

    id: str
    steps: tuple[StepResult, ...]
    first_error_step: int | None  # 1-based, None when every scored step is correct
    solution_score: float | None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    first_uncertain_step: int | None = None  # 1-based; in JSON only when an uncertain band is set

    @property
    def scores(self) -> list[float | None]:
        return [step.score for step in self.steps]

    def to_dict(self, *, critiques: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [step.to_dict(critiques=critiques) for step in self.steps]
        if self.config.get("uncertain_band") is None:
            del data["first_uncertain_step"]
        if not data["extra"]:
            del data["extra"]
        return data


def aggregate(scores: Sequence[float], how: str) -> float | None:
    """Solution-level score from step scores: min, product, mean or last (None without scores)."""
    if not scores:
        return None
    if how == "min":
        return min(scores)
    if how == "product":
        return math.prod(scores)
    if how == "mean":
        return sum(scores) / len(scores)
    return scores[-1]
