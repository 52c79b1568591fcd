"""The versioned prompt template files (data, read by `rprm_lite/prompt.py`), and the styles they make."""

from __future__ import annotations

import typing
from typing import Literal

PromptStyle = Literal["r-prm-eval", "chatml"]  # the released evaluation prompt, or it in a ChatML chat turn
PROMPT_STYLES: tuple[str, ...] = typing.get_args(PromptStyle)
