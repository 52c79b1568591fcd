"""Solutions to score: reading JSON, JSONL, ProcessBench items and stdin, with validation.

Every solution in a file is validated before any model work starts, so a bad line 900 cannot
waste the work on lines 1-899.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.jsonl import parse_jsonl

QUESTION_KEYS = ("question", "problem")
ID_KEYS = ("id", "idx")


@dataclass(frozen=True)
class Solution:
    """A question and the ordered steps of its solution. `extra` keeps fields the scorer ignores."""

    question: str
    steps: tuple[str, ...]
    id: str
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(cls, question: str, steps: list[str] | tuple[str, ...], id: str | None = None) -> Solution:
        """Validate and build a solution from Python values (the API entry point)."""
        return solution_from_dict({"question": question, "steps": list(steps), "id": id}, where="solution")


def content_id(question: str, steps: tuple[str, ...]) -> str:
    digest = hashlib.sha256(json.dumps([question, list(steps)]).encode("utf-8")).hexdigest()
    return "sha256:" + digest[:16]


def solution_from_dict(item: Any, *, where: str) -> Solution:
    """Validate one solution object; `where` names it in error messages (e.g. "line 3")."""
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a JSON object with 'question' and 'steps', got {_kind(item)}")
    question = next((item[k] for k in QUESTION_KEYS if k in item), None)
    if question is None:
        raise InputError(f"{where}: missing 'question' (or ProcessBench 'problem'); keys found: "
                         f"{', '.join(sorted(item)) or 'none'}")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string, got {_kind(question)}")
    if "steps" not in item:
        raise InputError(f"{where}: missing 'steps' (a list of step strings)")
    steps = item["steps"]
    if not isinstance(steps, list):
        raise InputError(f"{where}: 'steps' must be a list of strings, got {_kind(steps)}")
    if not steps:
        raise InputError(f"{where}: 'steps' is empty; a solution needs at least one step")
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, str):
            raise InputError(f"{where}: step {number} must be a string, got {_kind(step)}")
        if not step.strip():
            raise InputError(f"{where}: step {number} is empty")
    raw_id = next((item[k] for k in ID_KEYS if item.get(k) is not None), None)
    steps_tuple = tuple(steps)
    solution_id = str(raw_id) if raw_id is not None else content_id(question, steps_tuple)
    extra = {k: v for k, v in item.items() if k not in (*QUESTION_KEYS, *ID_KEYS, "steps")}
    return Solution(question=question, steps=steps_tuple, id=solution_id, extra=extra)


def read_solutions(source: str | Path) -> list[Solution]:
    """Read every solution from a JSON file (one object or a list), a JSONL file, or '-' for stdin."""
    name, text = _read_text(source)
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{name}: file is empty; expected a JSON solution or JSONL lines")
    if stripped[0] == "[":
        return _from_json_list(name, text)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return _from_jsonl(name, text)
    if isinstance(whole, dict):
        return [solution_from_dict(whole, where=name)]
    raise InputError(f"{name}: expected a JSON object, a list of objects or JSONL, got {_kind(whole)}")


def _from_json_list(name: str, text: str) -> list[Solution]:
    try:
        items = json.loads(text)
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
        return "<stdin>", sys.stdin.read()
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a JSON or JSONL solution file")
    try:
        return str(path), path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__)
