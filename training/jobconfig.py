"""One frozen config dataclass per command: its fields are the command's options, one to one.

`option()` declares a field with its help text; a field without a default is a required option.
The CLI builds each command's options from these fields, and every checkpoint records them.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rprm_lite.errors import InputError


def option(default: Any = dataclasses.MISSING, *, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    def __post_init__(self) -> None:
        problems = list(self.problems())
        if problems:
            raise InputError("invalid settings: " + "; ".join(problems))

    def problems(self) -> Iterator[str]:
        """Messages for invalid values; subclasses extend this."""
        return iter(())

    def at_least(self, **minimums: float) -> Iterator[str]:
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value < minimum:
                yield f"{name.replace('_', '-')} must be at least {minimum}, got {value}"

    def one_of(self, name: str, allowed: tuple[str, ...]) -> Iterator[str]:
        value = getattr(self, name)
        if value not in allowed:
            yield f"{name.replace('_', '-')} must be one of {', '.join(allowed)}, got {value!r}"

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def argument_parser(cls, prog: str, description: str) -> argparse.ArgumentParser:
        """An argparse parser with one flag per field (for `python -m` entry points outside the typer CLI)."""
        parser = argparse.ArgumentParser(prog=prog, description=description)
        for spec in dataclasses.fields(cls):
            flag, help_text = "--" + spec.name.replace("_", "-"), spec.metadata["help"]
            if spec.default is dataclasses.MISSING:
                parser.add_argument(flag, required=True, help=help_text)
            elif isinstance(spec.default, bool):
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec.default, help=help_text)
            else:
                parser.add_argument(flag, type=type(spec.default), default=spec.default, help=help_text)
        return parser
