"""Errors the converter raises for things a user can fix (bad checkpoint, bad option, full disk)."""

from __future__ import annotations

from rprm_lite.errors import RprmError


class ConversionError(RprmError):
    """The checkpoint, the options or the output location cannot give a correct GGUF."""

    exit_code = 5


class VerificationError(ConversionError):
    """`--verify` found the GGUF's logits further from the original's than the tolerance allows."""

    exit_code = 6
