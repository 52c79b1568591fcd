"""The one reader for the checkpoint's JSON (config.json, the shard index, tokenizer files, safetensors headers).

Hostile or broken JSON becomes a `CheckpointError` naming the file, never a traceback: sizes are
checked before reading, nesting depth before parsing (Python's parser would raise RecursionError),
integers are bounded in digits (Python refuses to convert very long ones with a ValueError), and the
top level must be an object.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError

MAX_JSON_BYTES = 256 * 1024 * 1024  # the largest tokenizer.json known is about 35 MB
MAX_JSON_DEPTH = 64  # real checkpoint files nest fewer than 10 levels
MAX_INT_DIGITS = 20  # every integer in these files fits 64 bits
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string literal, escapes included
_OPENERS, _CLOSERS = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


class _IntegerTooLong(Exception):
    pass


def read_json_file(path: Path, *, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON object from a checkpoint file, or a CheckpointError that names the file."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(f"{path}: expected a JSON file of at most {max_bytes} bytes, got {size}")
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_json_object(raw, source=path)


def parse_json_object(raw: bytes, *, source: Path | str, unique_keys: bool = False) -> dict[str, Any]:
    """Parse `raw` as one JSON object; `unique_keys` refuses an object that repeats a key."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{source}: expected UTF-8 JSON, got an invalid byte at {exc.start}") from None
    depth = nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(f"{source}: expected JSON nested at most {MAX_JSON_DEPTH} levels deep, got {depth}")
    hook = _refuse_repeated_keys if unique_keys else None
    try:
        value = json.loads(text, parse_int=_bounded_int, object_pairs_hook=hook)
    except _IntegerTooLong as exc:
        raise CheckpointError(f"{source}: expected integers of at most {MAX_INT_DIGITS} digits, got one of "
                              f"{exc} digits") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or a repeated key
        raise CheckpointError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: expected a JSON object, got {json_type(value)}")
    return value


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text; brackets inside strings do not count."""
    skeleton = _STRING.sub("", text).encode("utf-8", "replace")
    codes = np.frombuffer(skeleton, np.uint8)
    steps = np.isin(codes, _OPENERS).astype(np.int64) - np.isin(codes, _CLOSERS)
    return int(np.cumsum(steps).max(initial=0))


def json_type(value: object) -> str:
    """JSON's own name for a parsed value's type, for "expected X, got Y" messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
             int: "an integer", float: "a number"}
    return names.get(type(value), type(value).__name__)


def object_or_empty(value: object, where: str) -> dict[str, Any]:
    """`value` when it is a JSON object, {} when it is null or absent; anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: expected an object, got {json_type(value)}")
    return value


def short_repr(value: object, limit: int = 60) -> str:
    """repr() cut to `limit` characters, so a hostile value cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _IntegerTooLong(len(digits.lstrip("-")))
    return int(digits)


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"expected each key once, got {key!r} twice")
        seen.add(key)
    return dict(pairs)
