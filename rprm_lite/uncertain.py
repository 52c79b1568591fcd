"""A step's verdict from its score: `correct`, `wrong`, or, inside an optional band, `uncertain`.

Without a band a step is wrong when its score is below the threshold, else correct. With
`uncertain_band = (low, high)` (the band holds the threshold) a step is:
- `wrong` when its score is below `low`,
- `uncertain` when `low <= score < high`,
- `correct` when its score is `high` or more.
So a band of width 0 at the threshold is the same as no band. An uncertain step is its own outcome:
it is not an error (a solution's `first_error_step` is its first `wrong` step), it does not stop
scoring, and a solution reports its first uncertain step as `first_uncertain_step`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from rprm_lite.errors import InputError
from rprm_lite.options import is_number, shown

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


def parse_band(text: str) -> Band:
    """`LOW,HIGH` as typed on the command line, e.g. `0.4,0.6`."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (float(part) for part in parts)
    except ValueError:
        raise InputError(f"--uncertain-band: expected LOW,HIGH like 0.4,0.6, got {text!r}") from None
    return (low, high)


def normalize_band(value: Any) -> Any:
    """A list (as JSON gives it) becomes a tuple, its whole numbers floats (so `[0, 1]` from a server
    request is written as the CLI's `0,1` is); anything else is left for `band_problems` to judge."""
    if not isinstance(value, (list, tuple)):
        return value
    return tuple(float(v) if type(v) is int and abs(v) <= 1 else v for v in value)


def band_problems(band: Any, threshold: float, *, check_threshold: bool = True) -> Iterator[str]:
    if band is None:
        return
    if (not isinstance(band, tuple) or len(band) != 2
            or not all(is_number(v) for v in band)):
        yield f"uncertain_band must be two finite numbers LOW,HIGH, got {shown(band, 60)}"
        return
    low, high = band
    if not 0 <= low <= high <= 1:
        yield f"uncertain_band must satisfy 0 <= LOW <= HIGH <= 1, got {low},{high}"
    elif check_threshold and not low <= threshold <= high:
        yield (f"uncertain_band {low},{high} must hold the threshold {threshold} (the band is the doubt "
               "around the decision point)")
