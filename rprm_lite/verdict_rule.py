"""A step's verdict from its score: `correct`, `wrong`, or, inside an optional band, `uncertain`.

Without a band a step is wrong when its score is below the threshold, else correct. With
`uncertain_band = (low, high)` (the band holds the threshold) a step is:
- `wrong` when its score is below `low`,
- `uncertain` when `low <= score < high`,
- `correct` when its score is `high` or more.
So a band of width 0 at the threshold is the same as no band. An uncertain step is its own outcome:
it is not an error (a solution's `first_error_step` is its first `wrong` step), it does not stop
scoring, and a solution reports its first uncertain step as `first_uncertain_step`.

Every verdict of both scorers (the local engine's and the remote one's) is decided here; the
`--uncertain-band` option is parsed and checked with the other settings (`rprm_lite/config.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Band = tuple[float, float]


def step_verdict(score: float, threshold: float, band: Band | None) -> Literal["correct", "wrong", "uncertain"]:
    if band is None:
        return "wrong" if score < threshold else "correct"
    low, high = band
    if score < low:
        return "wrong"
    return "uncertain" if score < high else "correct"


def first_uncertain(verdicts: Sequence[str]) -> int | None:
    """1-based index of the first uncertain verdict, None when there is none."""
    return next((number for number, verdict in enumerate(verdicts, start=1) if verdict == "uncertain"), None)
