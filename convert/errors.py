"""Errors the converter raises for things a user can fix (bad checkpoint, bad option, full disk)."""

from __future__ import annotations

import errno

from rprm_lite.errors import ModelFileError, RprmError

# an OSError with one of these while writing means "no room": the message says so and what to do
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class ConversionError(RprmError):
    """The checkpoint, the options or the output location cannot give a correct GGUF."""

    exit_code = 5


class CheckpointError(ConversionError, ModelFileError):
    """A checkpoint file (config.json, an index, a safetensors header, the tokenizer) is malformed or
    does not match the rest of the checkpoint: a bad model file, exit code 3 as in the runtime."""

    exit_code = 3


class VerificationError(ConversionError):
    """`--verify` found the GGUF's logits further from the original's than the tolerance allows."""

    exit_code = 6
