"""Step labels of training solutions: which steps are known to be right or wrong.

Two label formats are read, both as extra fields of a solution object:
- `label` (ProcessBench): index of the first wrong step, 0-based, or -1 when every step is right.
  Steps before it are right, it is wrong, and the steps after it are excluded (not labelled).
- `labels` (PRM800K-style, one entry per step): true / 1 / "+" for right, false / 0 / "-" for wrong,
  null for a step nobody labelled (excluded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rprm_lite.errors import InputError
from rprm_lite.solution import Solution, read_solutions

T = TypeVar("T")

RIGHT_VALUES = (True, 1, "+")
WRONG_VALUES = (False, 0, "-")


@dataclass(frozen=True)
class LabelledStep:
    solution: Solution
    index: int  # 0-based
    correct: bool

    @property
    def number(self) -> int:
        """1-based step number, as in prompts and output files."""
        return self.index + 1

    @property
    def label(self) -> str:
        return "correct" if self.correct else "wrong"


def by_solution(items: Iterable[T], step_of: Callable[[T], LabelledStep]) -> list[list[T]]:
    """`items` grouped by the solution of their labelled step, in order of first appearance."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(step_of(item).solution.id, []).append(item)
    return list(groups.values())


def labelled_steps(solution: Solution, *, where: str = "") -> list[LabelledStep]:
    """The steps of `solution` that carry a label, in order."""
    name = where or f"solution {solution.id!r}"
    extra = solution.extra
    if "labels" in extra:
        flags = _per_step_labels(extra["labels"], len(solution.steps), name)
    elif "label" in extra:
        flags = _first_error_labels(extra["label"], len(solution.steps), name)
    else:
        raise InputError(f"{name}: no step labels; expected 'label' (index of the first wrong step, -1 if "
                         "none, as in ProcessBench) or 'labels' (one true/false/null per step)")
    return [LabelledStep(solution, i, flag) for i, flag in enumerate(flags) if flag is not None]


def read_labelled_steps(path: str | Path) -> list[LabelledStep]:
    """Every labelled step of a solutions file; all labels are checked before any work starts."""
    steps: list[LabelledStep] = []
    for solution in read_solutions(path):
        steps += labelled_steps(solution, where=f"{path}: solution {solution.id!r}")
    if not steps:
        raise InputError(f"{path}: no labelled steps found; nothing to train on")
    return steps


def _first_error_labels(label: Any, n_steps: int, name: str) -> list[bool | None]:
    if isinstance(label, bool) or not isinstance(label, int):
        raise InputError(f"{name}: 'label' must be an integer (first wrong step, 0-based, or -1), got {label!r}")
    if not -1 <= label < n_steps:
        raise InputError(f"{name}: 'label' is {label} but the solution has {n_steps} steps; "
                         f"expected -1 (all steps right) or 0..{n_steps - 1}")
    if label == -1:
        return [True] * n_steps
    return [True] * label + [False] + [None] * (n_steps - label - 1)


def _per_step_labels(labels: Any, n_steps: int, name: str) -> list[bool | None]:
    if not isinstance(labels, list):
        raise InputError(f"{name}: 'labels' must be a list with one entry per step, got {type(labels).__name__}")
    if len(labels) != n_steps:
        raise InputError(f"{name}: 'labels' has {len(labels)} entries but the solution has {n_steps} steps")
    flags: list[bool | None] = []
    for number, value in enumerate(labels, start=1):
        if value is None:
            flags.append(None)
        elif _is_one_of(value, RIGHT_VALUES):
            flags.append(True)
        elif _is_one_of(value, WRONG_VALUES):
            flags.append(False)
        else:
            raise InputError(f"{name}: label of step {number} is {value!r}; expected true/1/'+' (right), "
                             "false/0/'-' (wrong) or null (not labelled)")
    if all(flag is None for flag in flags):
        raise InputError(f"{name}: every entry of 'labels' is null; no step is labelled")
    return flags


def _is_one_of(value: Any, allowed: tuple[Any, ...]) -> bool:
    # `True == 1` in Python; compare types too so that 1.0 or "1" are not silently accepted
    return any(type(value) is type(option) and value == option for option in allowed)
