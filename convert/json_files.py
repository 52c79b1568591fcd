"""The one reader for the checkpoint's JSON (config.json, the shard index, tokenizer files, safetensors headers).

Hostile or broken JSON becomes a `CheckpointError` naming the file, never a traceback: sizes are
checked before reading; the text is parsed by the runtime's one bounded reader (`rprm_lite.jsonl.loads`:
nesting at most 64 deep, integers up to CPython's own digit limit, no NaN, Infinity or numbers too large
for a float, no lone surrogates), whose InputError becomes a CheckpointError here; the top level must be
an object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.jsonl import MAX_INT_DIGITS as MAX_INT_DIGITS  # the bounds are the runtime's reader's
from rprm_lite.jsonl import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from rprm_lite.jsonl import loads

from .errors import CheckpointError

MAX_JSON_BYTES = 256 * 1024 * 1024  # the largest tokenizer.json known is about 35 MB


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
        value = loads(raw, where=str(source), unique_keys=unique_keys)
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: expected a JSON object, got {json_type(value)}")
    return value


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
