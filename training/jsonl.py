"""JSONL files that training tools append to as they go, so an interrupted run keeps its work.

Each record is one line, written and flushed at once. On resume, a last line cut short by a crash
(no newline, not valid JSON) is removed before appending, so the file stays valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; expected a JSONL file with one object per line")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(item, dict):
                raise InputError(f"{path} line {number}: expected a JSON object, got {type(item).__name__}")
            yield number, item


def existing_records(path: str | Path) -> list[dict[str, Any]]:
    """Records already in an output file (none if it does not exist), after dropping a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    _drop_torn_last_line(path)
    return [item for _, item in read_jsonl(path)]


class JsonlWriter:
    """Appends one JSON object per line, flushed immediately."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_torn_last_line(path: Path) -> None:
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:])
    except ValueError:
        with path.open("r+b") as file:
            file.truncate(cut)
        return
    with path.open("ab") as file:  # a complete object that only lacks its newline
        file.write(b"\n")
