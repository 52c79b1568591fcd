"""One frozen config dataclass per command: its fields are the command's options, one to one.

The configs are runtime `Settings` (rprm_lite/options.py): `option()` declares a field with its help
text, a field without a default is a required option, and messages name a field as its flag does
(`max-tokens must be at least 1`). The CLI builds each command's options from these fields, and every
checkpoint records them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from rprm_lite.options import Settings, argument_parser, option

__all__ = ["JobConfig", "option"]


@dataclass(frozen=True, kw_only=True)
class JobConfig(Settings):
    DASHED = True

    @classmethod
    def argument_parser(cls, prog: str, description: str) -> argparse.ArgumentParser:
        """An argparse parser with one flag per field (for `python -m` entry points outside the typer CLI)."""
        return argument_parser(cls, prog, description)
