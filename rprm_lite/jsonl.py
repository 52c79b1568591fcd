"""JSONL files that long runs append to as they go, so an interrupted run keeps its work.

One implementation for scoring results, benchmark predictions and training data: each record is
one line, written and flushed at once; a last line cut short by a killed run (no newline, not valid
JSON) is ignored when reading and removed before appending again, so the file stays valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError


def read_jsonl(path: str | Path, *, what: str = "a JSONL file with one object per line",
               skip_torn_end: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a file; a bad line is an error naming it.

    With `skip_torn_end`, an unterminated invalid last line (a killed writer) is skipped instead.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected {what}")
    if not path.is_file():
        raise InputError(f"{path}: no such file; expected {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    yield from parse_jsonl(str(path), text, skip_torn_end=skip_torn_end)


def parse_jsonl(name: str, text: str, *, skip_torn_end: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of JSONL text, split on newlines only (JSON strings may hold U+2028 and friends)."""
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            if skip_torn_end and number == len(lines):
                return
            raise InputError(f"{name} line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(item, dict):
            raise InputError(f"{name} line {number}: expected a JSON object, got {type(item).__name__}")
        yield number, item


def existing_records(path: str | Path) -> list[dict[str, Any]]:
    """Records already in an output file (none if it does not exist), after dropping a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    trim_torn_end(path)
    return [item for _, item in read_jsonl(path)]


def trim_torn_end(path: Path) -> None:
    """Cut an unterminated, invalid last line; terminate a complete last object that lacks its newline."""
    data = path.read_bytes() if path.exists() else b""
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:])
    except ValueError:
        with path.open("r+b") as file:
            file.truncate(cut)
        return
    with path.open("ab") as file:
        file.write(b"\n")


class JsonlWriter:
    """Appends one JSON object per line, flushed immediately (and synced to disk with `fsync`)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            trim_torn_end(self.path)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(json.dumps(record, ensure_ascii=False) + "\n")

    def write_line(self, line: str) -> None:
        self._file.write(line)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
