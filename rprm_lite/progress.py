"""The one progress bar of every long command (scoring, benchmarks, building training data).

Shown on stderr, and only when stderr is a terminal: a long run must show life, and a log or a pipe
stays clean. It is transient, so the finished run's own output is all that remains on the screen.
"""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """`label: done/total [time left]`; `advance()` counts one unit done, `update()` sets the count."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label, self.total = label, total
        self._bar: Any = None

    def __enter__(self) -> ProgressBar:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(self.label, total=self.total)
            self._bar.start()
        return self

    def advance(self, units: int = 1, *, label: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=units, **({"description": label} if label else {}))

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
