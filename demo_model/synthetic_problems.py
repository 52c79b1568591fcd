"""The synthetic problems as records: `Problem` and its `Step`s, the arithmetic they follow, and reading them.

Every step keeps a machine-readable record (operands, operator, result, where each operand should come
from, the operator the step needs), so labels can be recomputed without trusting the generator
(`synthetic.py`), and a problem read back is checked against its own step texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rprm_lite.demo_model.synthetic_templates import Template
from rprm_lite.errors import InputError
from rprm_lite.solution import Solution, read_solutions, solution_from_dict

GENERATOR = "rprm-lite-synthetic-v1"
ERROR_KINDS = ("arithmetic", "copy", "operation", "contradiction")
OPERATORS = ("+", "-", "*", "/")
SYMBOLS = {"+": "+", "-": "-", "*": "×", "/": "÷"}
MIN_CORRECT_RESULT = 2  # no "1 stickers": a right step's result is 2..99
MAX_CORRECT_VALUE = 99  # every number of a correct solution stays in 1..99


# -- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One written step: `left op right = result` as it appears in `text`, and what it should have used."""

    text: str
    left: int
    op: str  # one of OPERATORS, as written (the text shows × and ÷)
    right: int
    result: int  # as written, right or wrong
    sources: tuple[str, str]  # where each operand should come from: "question:<name>" or "step:<0-based index>"
    intended_op: str  # the operator the step's goal needs
    goal: str


@dataclass(frozen=True)
class Problem:
    id: str
    split: str
    template: str
    question: str
    quantities: Mapping[str, int]  # the numbers given in the question, by name
    steps: tuple[Step, ...]
    answer: int  # the right final answer
    error: Mapping[str, Any] | None = None  # {"step": 0-based index, "kind": ..., "operand": 0/1/None}
    names: Mapping[str, str] = field(default_factory=dict)  # what each quantity is ("the muffins sold")

    @property
    def label(self) -> int:
        """0-based index of the first wrong step, -1 when every step is right (ProcessBench's `label`)."""
        return -1 if self.error is None else self.error["step"]

    @property
    def final_answer_correct(self) -> bool:
        return self.steps[-1].result == self.answer

    def step_labels(self) -> list[bool | None]:
        """True/False for steps up to the first error, None after it (not labelled)."""
        if self.label == -1:
            return [True] * len(self.steps)
        return [True] * self.label + [False] + [None] * (len(self.steps) - self.label - 1)

    def item(self) -> dict[str, Any]:
        """ProcessBench fields, plus per-step `labels` and the machine-readable `trace`."""
        return {"id": self.id, "generator": GENERATOR, "problem": self.question,
                "steps": [step.text for step in self.steps], "final_answer_correct": self.final_answer_correct,
                "label": self.label, "labels": self.step_labels(), "trace": self.trace()}

    def trace(self) -> dict[str, Any]:
        steps = [{k: v for k, v in asdict(step).items() if k != "text"} for step in self.steps]
        return {"split": self.split, "template": self.template, "quantities": dict(self.quantities),
                "names": dict(self.names), "steps": steps, "answer": self.answer,
                "error": None if self.error is None else dict(self.error)}

    def solution(self) -> Solution:
        return solution_from_dict(self.item(), where=f"problem {self.id}")

    @classmethod
    def from_item(cls, item: Mapping[str, Any], *, where: str = "") -> Problem:
        """Rebuild a problem from `item()` output (or a Solution's fields), checking the trace fits the steps."""
        where = where or f"problem {item.get('id')!r}"
        trace = item.get("trace")
        if not isinstance(trace, Mapping):
            raise InputError(f"{where}: no 'trace' field; expected a synthetic problem written by {GENERATOR}")
        texts = list(item["steps"])
        try:
            records = [Step(text=text, **{**step, "sources": tuple(step["sources"])})
                       for text, step in zip(texts, trace["steps"], strict=True)]
            problem = cls(id=str(item["id"]), split=trace["split"], template=trace["template"],
                       question=item.get("problem", item.get("question")), quantities=dict(trace["quantities"]),
                       steps=tuple(records), answer=trace["answer"], error=trace["error"],
                       names=dict(trace.get("names", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: the 'trace' does not match its {len(texts)} steps ({exc})") from None
        for number, step in enumerate(problem.steps, start=1):
            shown = expression(step.left, step.op, step.right, step.result)
            if shown not in step.text:
                raise InputError(f"{where}: step {number} should show {shown!r} as its trace records, got "
                                 f"{step.text!r}; the trace only fits the generator's own steps")
        return problem


# -- the arithmetic ------------------------------------------------------------------------------
def apply(op: str, left: int, right: int) -> int | None:
    """The exact integer result, or None (division with a remainder, by zero, or a negative result)."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right if left >= right else None
    if op == "*":
        return left * right
    if right == 0 or left % right:
        return None
    return left // right


def expression(left: int, op: str, right: int, result: int) -> str:
    return f"{left} {SYMBOLS[op]} {right} = {result}"


@dataclass(frozen=True)
class Written:
    left: int
    op: str
    right: int
    result: int


def run_chain(template: Template, quantities: Mapping[str, int], *, override: tuple[int, Written] | None = None,
              limit: int = MAX_CORRECT_VALUE) -> list[Written] | None:
    """Every step's written values; `override` replaces one step, and later steps compute from its result."""
    values = dict(quantities)
    chain = []
    for index, op in enumerate(template.ops):
        if override is not None and override[0] == index:
            step = override[1]
        else:
            left, right = values[op.left], values[op.right]
            result = apply(op.op, left, right)
            if result is None:
                return None
            step = Written(left, op.op, right, result)
        if not (0 if override else MIN_CORRECT_RESULT) <= step.result <= limit:
            return None
        values[op.name] = step.result
        chain.append(step)
    return chain


def sources(template: Template) -> list[tuple[str, str]]:
    index = {op.name: i for i, op in enumerate(template.ops)}
    where = [f"step:{index[name]}" if name in index else f"question:{name}" for op in template.ops
             for name in (op.left, op.right)]
    return list(zip(where[::2], where[1::2], strict=True))


# -- reading ------------------------------------------------------------------------------------
def read_problems(path: str | Path) -> list[Problem]:
    """Problems from a file this module wrote (train JSONL or a ProcessBench JSON), via the solution reader."""
    return [Problem.from_item({"id": s.id, "problem": s.question, "steps": s.steps, **s.extra},
                              where=f"{path}: {s.id}") for s in read_solutions(path)]
