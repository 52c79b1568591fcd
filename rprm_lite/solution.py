"""Solutions to score: reading JSON, JSONL, ProcessBench items and stdin, with validation.

Every solution in a file is validated before any model work starts, so a bad line 900 cannot
waste the work on lines 1-899. Sizes are checked before the work they would cost: the file's size
before it is read, a solution's steps and characters before anything is tokenized.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rprm_lite.errors import InputError
from rprm_lite.jsonl import check_text, loads, parse_jsonl

QUESTION_KEYS = ("question", "problem")
ID_KEYS = ("id", "idx")
MAX_INPUT_BYTES = 256 * 2**20  # one solution file or stdin
MAX_STEPS = 1000  # per solution; ProcessBench and PRMBench solutions have at most a few dozen
MAX_SOLUTION_CHARS = 1_000_000  # question plus steps: about 250k tokens, more than any model's context


@dataclass(frozen=True)
class Solution:
    """A question and the ordered steps of its solution. `extra` keeps fields the scorer ignores."""

    question: str
    steps: tuple[str, ...]
    id: str
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(cls, question: str, steps: Sequence[str], id: str | None = None) -> Solution:
        """Validate and build a solution from Python values (the API entry point)."""
        steps = steps if isinstance(steps, (str, bytes)) else list(steps)  # a str is refused, not split
        return solution_from_dict({"question": question, "steps": steps, "id": id}, where="solution")


def content_id(question: str, steps: tuple[str, ...]) -> str:
    digest = hashlib.sha256(json.dumps([question, list(steps)]).encode("utf-8")).hexdigest()
    return "sha256:" + digest[:16]


def solution_from_dict(item: Any, *, where: str) -> Solution:
    """Validate one solution object; `where` names it in error messages (e.g. "line 3")."""
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a JSON object with 'question' and 'steps', got {_kind(item)}")
    question = _question(item, where)
    steps = _steps(item, where)
    solution_id = _id(item, where) or content_id(question, steps)
    check_text(solution_id, where=f"{where}: id")
    extra = {k: v for k, v in item.items() if k not in (*QUESTION_KEYS, *ID_KEYS, "steps")}
    return Solution(question=question, steps=steps, id=solution_id, extra=extra)


def _id(item: dict[str, Any], where: str) -> str | None:
    """The id as text: a string, or an integer (PRMBench's `idx`); anything else would be echoed as a Python
    repr ("{'a': 1}", "True"), so it is refused."""
    key = next((k for k in ID_KEYS if item.get(k) is not None), None)
    if key is None:
        return None
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: '{key}' must be a string or an integer, got {_kind(value)}")
    return str(value)


def _keys(item: dict[str, Any], *, most: int = 8, width: int = 30) -> str:
    """An object's keys for an error message, each and their number cut so a hostile object cannot flood it."""
    keys = sorted(map(str, item))
    shown = [key if len(key) <= width else key[:width - 1] + "…" for key in keys[:most]]
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return (", ".join(shown) + more) or "none"


def _question(item: dict[str, Any], where: str) -> str:
    question = next((item[k] for k in QUESTION_KEYS if k in item), None)
    if question is None:
        raise InputError(f"{where}: missing 'question' (or ProcessBench 'problem'); keys found: {_keys(item)}")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string, got {_kind(question)}")
    check_text(question, where=f"{where}: question")
    return question


def _steps(item: dict[str, Any], where: str) -> tuple[str, ...]:
    if "steps" not in item:
        raise InputError(f"{where}: missing 'steps' (a list of step strings)")
    steps = item["steps"]
    if not isinstance(steps, list):
        raise InputError(f"{where}: 'steps' must be a list of strings, got {_kind(steps)}")
    if not steps:
        raise InputError(f"{where}: 'steps' is empty; a solution needs at least one step")
    if len(steps) > MAX_STEPS:
        raise InputError(f"{where}: {len(steps):,} steps; a solution may have at most {MAX_STEPS:,}")
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, str):
            raise InputError(f"{where}: step {number} must be a string, got {_kind(step)}")
        if not step.strip():
            raise InputError(f"{where}: step {number} is empty")
        check_text(step, where=f"{where}: step {number}")
    chars = sum(map(len, steps)) + len(next(item[k] for k in QUESTION_KEYS if k in item))
    if chars > MAX_SOLUTION_CHARS:
        raise InputError(f"{where}: {chars:,} characters of question and steps; a solution may have at most "
                         f"{MAX_SOLUTION_CHARS:,} (far more than any model's context holds)")
    return tuple(steps)


def read_solutions(source: str | Path) -> list[Solution]:
    """Read every solution from a JSON file (one object or a list), a JSONL file, or '-' for stdin."""
    name, text = _read_text(source)
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{name}: file is empty; expected a JSON solution or JSONL lines")
    if stripped[0] == "[":
        return _from_json_list(name, text)
    try:
        whole = loads(text, where=name)
    except json.JSONDecodeError:
        return _from_jsonl(name, text)
    if isinstance(whole, dict):
        return [solution_from_dict(whole, where=name)]
    raise InputError(f"{name}: expected a JSON object, a list of objects or JSONL, got {_kind(whole)}")


def _from_json_list(name: str, text: str) -> list[Solution]:
    try:
        items = loads(text, where=name)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    solutions = [solution_from_dict(item, where=f"{name} item {i}") for i, item in enumerate(items, start=1)]
    if not solutions:
        raise InputError(f"{name}: the list holds no solutions")
    return _unique(name, solutions)


def _from_jsonl(name: str, text: str) -> list[Solution]:
    solutions = [solution_from_dict(item, where=f"{name} line {number}") for number, item in parse_jsonl(name, text)]
    return _unique(name, solutions)


def _unique(name: str, solutions: list[Solution]) -> list[Solution]:
    seen: set[str] = set()
    for solution in solutions:
        if solution.id in seen:
            raise InputError(f"{name}: two solutions share the id {solution.id!r}; ids must be unique "
                             "so that results can be matched and resumed")
        seen.add(solution.id)
    return solutions


def _read_text(source: str | Path) -> tuple[str, str]:
    if str(source) == "-":
        return "<stdin>", _decode("<stdin>", _read_limited(sys.stdin.buffer, "<stdin>"))
    path = Path(source)
    try:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder; expected a JSON or JSONL solution file")
        if path.is_file() and path.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{path}: {path.stat().st_size:,} bytes; a solution file may have at most "
                             f"{MAX_INPUT_BYTES:,} (split it)")
        with path.open("rb") as handle:
            return str(path), _decode(str(path), _read_limited(handle, str(path)))
    except OSError as exc:
        raise InputError(f"{_short(path)}: cannot read ({exc.strerror or exc})") from None


def _read_limited(handle: BinaryIO, name: str) -> bytes:
    """At most MAX_INPUT_BYTES (stdin and special files have no size to check beforehand)."""
    data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{name}: more than {MAX_INPUT_BYTES:,} bytes; a solution file may have at most that")
    return data


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:100] + "..." + text[-60:]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__)
