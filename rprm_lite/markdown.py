"""The one markdown-table writer of every benchmark and report (standard library only, so a benchmark's
measurement child can import it without loading anything it would then count)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SEPARATORS = {"l": "---", "r": "---:"}  # left-aligned (text), right-aligned (numbers)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A header row, a separator row and one row per entry; each cell is written with `str`.

    `align` has one letter per column, "l" or "r" (e.g. "lrrr": text, then three numbers); the default leaves
    every column left-aligned. No trailing newline.
    """
    align = align or "l" * len(header)
    if len(align) != len(header) or not set(align) <= set(SEPARATORS):
        raise ValueError(f"align: expected l or r for each of the {len(header)} columns, got {align!r}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(SEPARATORS[letter] for letter in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
