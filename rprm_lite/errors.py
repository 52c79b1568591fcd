"""The errors rprm-lite raises for things a user can fix.

Only the CLI turns these into exit codes; library callers catch `RprmError`.
"""

from __future__ import annotations


class RprmError(Exception):
    """Base class: a problem with the user's input, files or settings, never a bug."""

    exit_code = 1


class InputError(RprmError):
    """A solution file, option value or prediction file is malformed."""

    exit_code = 2


class ModelFileError(RprmError):
    """A model file is missing, is not GGUF, is truncated or lacks what R-PRM needs."""

    exit_code = 3


class ModelNotFoundError(ModelFileError):
    """No file at the model path given: a wrong option value (exit 2), not a broken file."""

    exit_code = 2


class ContextOverflowError(RprmError):
    """A prompt (plus the room the critiques need) does not fit the model's context."""

    exit_code = 4


class ScoringCancelled(RprmError):
    """A call was stopped by its caller's `should_stop` (e.g. a server's client went away)."""

    exit_code = 130
