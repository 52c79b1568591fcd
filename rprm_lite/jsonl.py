"""JSONL files that long runs append to as they go, so an interrupted run keeps its work.

One implementation for scoring results, benchmark predictions and training data: each record is
one line, written and flushed at once; a last line cut short by a killed run (no newline, not valid
JSON) is ignored when reading and removed before appending again, so the file stays valid.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError, RprmError

MAX_JSON_DEPTH = 64  # nesting of arrays and objects; real inputs use three or four levels, checkpoints under 10
# CPython's own limit on integer digits (4300 unless the interpreter was told otherwise; 0 means none, and then
# 4300 still): a checkpoint's config holds transformers' 31-digit `model_max_length`, a 5,000-digit one is hostile
MAX_INT_DIGITS = sys.get_int_max_str_digits() or sys.int_info.default_max_str_digits
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string literal, escapes included
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # how a lone surrogate gets into text decoded as UTF-8
_OPENERS, _CLOSERS = b"[{", b"]}"
MAX_JSON_FILE_BYTES = 64 * 2**20  # a settings, calibration or run file; results files are read as JSONL


def loads(text: str | bytes, *, where: str, max_depth: int = MAX_JSON_DEPTH, unique_keys: bool = False) -> Any:
    """The one reader of untrusted JSON (inputs, results files, server bodies and answers, cache entries,
    calibration files, checkpoint files). A syntax error stays a `json.JSONDecodeError` (the caller knows
    the line); every other problem is an InputError naming `where`: text that is not UTF-8, nesting
    deeper than `max_depth`, integers of more than MAX_INT_DIGITS digits, NaN, Infinity or numbers too
    large for a float, lone surrogates, and with `unique_keys` a repeated key.

    Python's parser refuses nesting beyond its recursion limit with a RecursionError (its C scanner
    counts), so the depth is measured on the parsed value; the text is only scanned for it then."""
    strings = isinstance(text, str) and not _encodable(text)  # raw surrogates only come in through str
    text = _utf8(text, where)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int,
                           object_pairs_hook=_unique_object if unique_keys else None)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        depth = nesting_depth(text)
        raise InputError(f"{where}: expected JSON nested at most {max_depth} levels deep, got "
                         f"{depth if depth > max_depth else 'more than Python parses'}") from None
    except ValueError as exc:  # a number out of range, a repeated key
        raise InputError(f"{where}: {str(exc).split(';')[0]}") from None
    check_tree(value, where=where, max_depth=max_depth,
               strings=strings or _ESCAPED_SURROGATE.search(text) is not None)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(text: str | bytes, where: str) -> str:
    if isinstance(text, str):
        return text
    try:
        return bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: expected UTF-8 JSON, got an invalid byte at {exc.start}") from None


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text; brackets inside strings do not count."""
    import numpy as np  # the runtime's own dependency; imported here so reading a small file stays fast

    skeleton = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), np.uint8)
    steps = (np.isin(skeleton, np.frombuffer(_OPENERS, np.uint8)).astype(np.int64)
             - np.isin(skeleton, np.frombuffer(_CLOSERS, np.uint8)))
    return int(np.cumsum(steps).max(initial=0))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (expected a finite number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large for a float (expected at most about 1.8e308)")
    return value


def _bounded_int(digits: str) -> int:
    count = len(digits.lstrip("-"))
    if count > MAX_INT_DIGITS:
        raise ValueError(f"expected integers of at most {MAX_INT_DIGITS} digits, got one of {count} digits")
    return int(digits)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"expected each key once, got {key[:60]!r} twice")
        seen.add(key)
    return dict(pairs)


def check_tree(value: Any, *, where: str, max_depth: int = MAX_JSON_DEPTH, strings: bool = True) -> None:
    """Arrays and objects nested at most `max_depth` deep; with `strings`, every string (keys too)
    encodable as UTF-8 (no lone surrogates)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, where=where)
        if not isinstance(item, (dict, list)):
            continue
        deepest = max(deepest, depth)
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)) or (strings and isinstance(child, str)))
    if deepest > max_depth:
        raise InputError(f"{where}: expected JSON nested at most {max_depth} levels deep, got {deepest}")


def check_text(text: str, *, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{where}: the text holds a lone surrogate ({text[exc.start]!a} at character "
                         f"{exc.start}), which is not valid Unicode; fix the escape in the file") from None


def read_json_file(path: str | Path, *, where: str, max_bytes: int = MAX_JSON_FILE_BYTES) -> tuple[Any, bytes]:
    """A JSON file's value and its bytes, read through `loads`; at most `max_bytes` are read, so a
    huge file or an endless pipe is an InputError, not a hang on memory."""
    data = read_limited(path, where=where, max_bytes=max_bytes)
    try:
        return loads(data, where=where), data
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def read_limited(path: str | Path, *, where: str, max_bytes: int) -> bytes:
    """A file's bytes, refused without reading when its size is known to be over `max_bytes`."""
    try:
        with Path(path).open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(max_bytes + 1) if size <= max_bytes else b""
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if size > max_bytes or len(data) > max_bytes:
        raise InputError(f"{where}: expected a file of at most {max_bytes:,} bytes, got "
                         f"{max(size, len(data)):,}{'' if size > max_bytes else ' or more'}")
    return data


def read_jsonl(path: str | Path, *, what: str = "a JSONL file with one object per line",
               skip_torn_end: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a file; a bad line is an error naming it.

    With `skip_torn_end`, an unterminated invalid last line (a killed writer) is skipped instead.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a folder; expected {what}")
        if not path.is_file():
            raise InputError(f"{path}: no such file; expected {what}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    yield from parse_jsonl(str(path), text, skip_torn_end=skip_torn_end)


def parse_jsonl(name: str, text: str, *, skip_torn_end: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of JSONL text, split on newlines only (JSON strings may hold U+2028 and friends)."""
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = loads(line, where=f"{name} line {number}")
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


def trim_torn_end(path: Path, *, record_start: str = "{") -> None:
    """Cut an unterminated, invalid last line; terminate a complete last object that lacks its newline.

    A last line is only cut when it could be a record cut short (it begins like one, `record_start`):
    anything else means the file was not written by a JsonlWriter, and it is refused untouched.
    """
    data = path.read_bytes() if path.exists() else b""
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    tail, start = data[cut:], record_start.encode()
    try:
        complete = isinstance(loads(tail, where=str(path)), dict)
    except (ValueError, InputError):
        complete = False
        if tail.startswith(start) or start.startswith(tail):
            with path.open("r+b") as file:
                file.truncate(cut)
            return
    if not complete:
        raise InputError(f"{path}: its last line is neither a record nor one cut short by a killed run, so this "
                         "is not a file rprm-lite wrote; it is left untouched (choose another output file)")
    with path.open("ab") as file:
        file.write(b"\n")


class JsonlWriter:
    """Appends one JSON object per line, each written whole with one unbuffered write (and synced to
    disk with `fsync`). A failed write (a full disk) cuts the file back to its last complete line and
    raises RprmError, so the file stays valid and a rerun resumes from it."""

    def __init__(self, path: str | Path, *, fsync: bool = False, record_start: str = "{") -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            trim_torn_end(self.path, record_start=record_start)
            self._file = self.path.open("ab", buffering=0)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(json.dumps(record, ensure_ascii=False) + "\n")

    def write_line(self, line: str) -> None:
        data = line.encode("utf-8")
        start = self._file.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view):]
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._file.truncate(start)
            raise RprmError(f"{self.path}: cannot write ({exc.strerror or exc}); the {self.written} record(s) "
                            "written before are kept: free some space and rerun the same command to resume") from None
        self.written += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
