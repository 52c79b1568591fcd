"""Errors of the training tools, under the runtime's `RprmError` so the CLI reports them the same way."""

from __future__ import annotations

from rprm_lite.errors import RprmError


class TrainingError(RprmError):
    """A training run cannot start or continue: bad checkpoint, bad data file, out of memory."""

    exit_code = 5


class TeacherError(TrainingError):
    """The teacher endpoint failed after every retry, or answered with something unusable."""

    exit_code = 6
