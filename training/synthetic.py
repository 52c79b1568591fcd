"""Synthetic, step-labelled arithmetic word problems: seed data and a benchmark for a small demo R-PRM.

Each problem comes from a template (shopping, baking, travel, ...) whose plan is a chain of single
operations. A solution has one step per operation, written as text such as
"After the sale, she has 48 - 15 = 33 muffins left." Some solutions carry one injected error:

- `arithmetic`:    the result is wrong (48 - 15 = 35);
- `copy`:          an operand is copied wrongly from the question or from an earlier step (84 - 15);
- `operation`:     the wrong operation for what the step finds (48 + 15 when the sale takes muffins away);
- `contradiction`: the step uses a value an earlier step already changed, as if that step never happened.

Steps after the error follow consistently from the wrong value. Every step keeps a machine-readable
record (operands, operator, result, where each operand should come from, the operator the step needs),
so labels can be recomputed without trusting the generator. Splits are disjoint by construction:
a problem's text decides by its hash which split may hold it, and ids are prefixed by split.

    python -m rprm_lite.training.synthetic --out data/synthetic --train 2000 --dev 200 --test 200 --seed 0

writes `train.jsonl` (one solution per line with per-step `labels`) and `dev/gsm8k.json`,
`test/gsm8k.json` in ProcessBench format (the benchmark harness reads `<subset>.json` files from a
folder, and only knows the ProcessBench subset names), plus `manifest.json` with the settings.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError, RprmError
from rprm_lite.solution import Solution, read_solutions, solution_from_dict
from rprm_lite.training.jobconfig import JobConfig, option

GENERATOR = "rprm-lite-synthetic-v1"
SPLITS = ("train", "dev", "test")
# a problem whose text hashes into a split's share of [0, 1) can only ever appear in that split
SPLIT_BUCKETS = {"test": (0.0, 0.1), "dev": (0.1, 0.2), "train": (0.2, 1.0)}
PROCESSBENCH_SUBSET = "gsm8k"  # the harness loads <subset>.json and knows only ProcessBench's names
ERROR_KINDS = ("arithmetic", "copy", "operation", "contradiction")
OPERATORS = ("+", "-", "*", "/")
SYMBOLS = {"+": "+", "-": "-", "*": "×", "/": "÷"}
MIN_CORRECT_RESULT = 2  # no "1 stickers": a right step's result is 2..99
MAX_CORRECT_VALUE = 99  # every number of a correct solution stays in 1..99
MAX_WRONG_VALUE = 999  # numbers after an injected error may leave that range, not this one
QUANTITY_TRIES = 500
ERROR_TRIES = 30


@dataclass(frozen=True)
class Op:
    """One planned operation: `name = left op right`, where left/right name quantities or earlier ops."""

    name: str
    left: str
    op: str
    right: str
    text: str  # the step sentence; {expr} becomes "a op b = c"
    goal: str  # what the step finds, for critiques


@dataclass(frozen=True)
class Template:
    name: str
    question: str
    quantities: Mapping[str, tuple[int, int]]  # inclusive ranges
    ops: tuple[Op, ...]
    words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # what each quantity of the question is, for critiques


TEMPLATES = (
    Template(
        "shopping",
        "{name} has {money} dollars. {Sub} buys {count} {items} that cost {price} dollars each. Then {pos} "
        "{relative} gives {obj} {gift} dollars. How many dollars does {name} have now?",
        {"money": (20, 99), "count": (2, 9), "price": (2, 12), "gift": (2, 40)},
        (Op("cost", "count", "*", "price", "The {items} cost {expr} dollars.", "the cost of the {items}"),
         Op("left", "money", "-", "cost", "After buying the {items}, {name} has {expr} dollars.",
            "the dollars left after buying the {items}"),
         Op("total", "left", "+", "gift", "After the gift from {pos} {relative}, {name} has {expr} dollars.",
            "the dollars {name} has after the gift")),
        {"items": ("notebooks", "pens", "comic books", "toy cars", "puzzles"),
         "relative": ("aunt", "uncle", "grandmother", "grandfather", "sister", "brother")},
        {"money": "the dollars {name} has at first", "count": "the {items} bought", "price": "the price of each",
         "gift": "the gift"}),
    Template(
        "baking",
        "{name} bakes {trays} trays of {goods} with {per_tray} {goods} on each tray. {Sub} sells {sold} {goods} "
        "and packs the rest equally into {boxes} boxes. How many {goods} go into each box?",
        {"trays": (2, 9), "per_tray": (2, 12), "sold": (1, 60), "boxes": (2, 9)},
        (Op("baked", "trays", "*", "per_tray", "{name} bakes {expr} {goods} in all.", "the {goods} baked"),
         Op("left", "baked", "-", "sold", "After the sale, {sub} has {expr} {goods} left.",
            "the {goods} left after the sale"),
         Op("each", "left", "/", "boxes", "Each box gets {expr} {goods}.", "the {goods} in each box")),
        {"goods": ("muffins", "cookies", "cupcakes", "rolls", "pies")},
        {"trays": "the trays", "per_tray": "the {goods} on each tray", "sold": "the {goods} sold",
         "boxes": "the boxes"}),
    Template(
        "travel",
        "A {vehicle} travels at {speed} km per hour for {hours} hours, and then another {extra} km. The whole "
        "trip is {trip} km long. How many km of the trip are left?",
        {"speed": (5, 30), "hours": (2, 4), "extra": (2, 30), "trip": (30, 99)},
        (Op("first", "speed", "*", "hours", "In the first part, the {vehicle} covers {expr} km.",
            "the distance of the first part"),
         Op("so_far", "first", "+", "extra", "So far the {vehicle} has covered {expr} km.",
            "the distance covered so far"),
         Op("left", "trip", "-", "so_far", "The {vehicle} still has {expr} km to go.", "the distance left")),
        {"vehicle": ("bus", "train", "truck", "van", "boat")},
        {"speed": "the speed", "hours": "the hours", "extra": "the extra km", "trip": "the length of the trip"}),
    Template(
        "sharing",
        "{name} has {start} {things}. {Sub} buys {packs} packs with {per_pack} {things} in each pack. {Sub} "
        "shares all the {things} equally among {friends} friends, and each friend gives away {used} of them. "
        "How many {things} does each friend have left?",
        {"start": (1, 40), "packs": (2, 6), "per_pack": (2, 10), "friends": (2, 9), "used": (1, 9)},
        (Op("bought", "packs", "*", "per_pack", "{name} buys {expr} {things}.", "the {things} bought"),
         Op("total", "start", "+", "bought", "{name} now has {expr} {things}.", "the {things} {name} has now"),
         Op("each", "total", "/", "friends", "Each friend gets {expr} {things}.",
            "the {things} each friend gets"),
         Op("left", "each", "-", "used", "Each friend has {expr} {things} left.",
            "the {things} each friend has left")),
        {"things": ("stickers", "marbles", "cards", "beads", "stamps")},
        {"start": "the {things} at first", "packs": "the packs", "per_pack": "the {things} in each pack",
         "friends": "the friends", "used": "the {things} each friend gives away"}),
    Template(
        "savings",
        "{name} saves {weekly} dollars a week for {weeks} weeks. {Sub} spends {spent} dollars on a {thing} and "
        "then earns {earned} dollars by {job}. {Sub} puts the money equally into {jars} jars. How many dollars "
        "are in each jar?",
        {"weekly": (2, 15), "weeks": (2, 8), "spent": (1, 60), "earned": (1, 40), "jars": (2, 6)},
        (Op("saved", "weekly", "*", "weeks", "{name} saves {expr} dollars.", "the dollars saved"),
         Op("after", "saved", "-", "spent", "After buying the {thing}, {sub} has {expr} dollars.",
            "the dollars left after buying the {thing}"),
         Op("total", "after", "+", "earned", "After {job}, {sub} has {expr} dollars.",
            "the dollars after {job}"),
         Op("each", "total", "/", "jars", "Each jar gets {expr} dollars.", "the dollars in each jar")),
        {"thing": ("book", "game", "ball", "kite", "lamp"),
         "job": ("washing cars", "walking dogs", "raking leaves", "selling lemonade")},
        {"weekly": "the dollars a week", "weeks": "the weeks", "spent": "the dollars spent",
         "earned": "the dollars earned", "jars": "the jars"}),
    Template(
        "farm",
        "A farmer has {pens} pens with {per_pen} {animals} in each pen. The farmer sells {sold} {animals}, and "
        "then {born} baby {animals} are born. The farmer puts all the {animals} equally into {barns} barns, and "
        "{moved} {animals} from each barn go out to the field. How many {animals} stay in each barn?",
        {"pens": (2, 9), "per_pen": (2, 12), "sold": (1, 40), "born": (1, 30), "barns": (2, 6), "moved": (1, 9)},
        (Op("total", "pens", "*", "per_pen", "The farmer has {expr} {animals}.", "the {animals} on the farm"),
         Op("after_sale", "total", "-", "sold", "After the sale, there are {expr} {animals}.",
            "the {animals} left after the sale"),
         Op("after_birth", "after_sale", "+", "born", "After the births, there are {expr} {animals}.",
            "the {animals} after the births"),
         Op("each", "after_birth", "/", "barns", "Each barn gets {expr} {animals}.", "the {animals} in each barn"),
         Op("stay", "each", "-", "moved", "In each barn, {expr} {animals} stay.",
            "the {animals} that stay in each barn")),
        {"animals": ("goats", "sheep", "pigs", "rabbits", "ducks")},
        {"pens": "the pens", "per_pen": "the {animals} in each pen", "sold": "the {animals} sold",
         "born": "the {animals} born", "barns": "the barns", "moved": "the {animals} that go out of each barn"}),
    Template(
        "class",
        "A class has {boys} boys and {girls} girls. On {day}, {absent} children are absent. The teacher puts the "
        "children who are present into groups of {size}. How many groups are there?",
        {"boys": (5, 20), "girls": (5, 20), "absent": (1, 9), "size": (2, 6)},
        (Op("total", "boys", "+", "girls", "The class has {expr} children.", "the children in the class"),
         Op("present", "total", "-", "absent", "On {day}, {expr} children are present.", "the children present"),
         Op("groups", "present", "/", "size", "There are {expr} groups.", "the number of groups")),
        {"day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")},
        {"boys": "the boys", "girls": "the girls", "absent": "the children absent", "size": "the group size"}),
)
PEOPLE = (("Maya", "she"), ("Leo", "he"), ("Ava", "she"), ("Omar", "he"), ("Nina", "she"), ("Sam", "he"),
          ("Lena", "she"), ("Ben", "he"), ("Iris", "she"), ("Tom", "he"), ("Zoe", "she"), ("Raj", "he"))
PRONOUNS = {"she": {"Sub": "She", "sub": "she", "obj": "her", "pos": "her"},
            "he": {"Sub": "He", "sub": "he", "obj": "him", "pos": "his"}}


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


# -- injected errors -----------------------------------------------------------------------------
def slip(rng: random.Random, value: int, *, minimum: int = 1) -> int:
    """A plausible miscopy or miscount of `value`: off by a little, off by ten, or two digits swapped."""
    candidates = {value + d for d in (-10, -2, -1, 1, 2, 10)}
    if 10 <= value <= 99 and value % 10 != value // 10:
        candidates.add(int(str(value)[::-1]))
    return rng.choice(sorted(c for c in candidates if c >= minimum and c != value))


def stale_value(template: Template, chain: Sequence[Written], source: str) -> int | None:
    """The value before step j changed it, when `source` is step j and that step adds or takes away."""
    if not source.startswith("step:"):
        return None
    before = int(source.split(":")[1])
    return chain[before].left if template.ops[before].op in "+-" else None


ErrorMaker = Callable[[random.Random, Template, Mapping[str, int], list[Written], int],
                      tuple[Written, int | None] | None]


def _arithmetic(rng, template, quantities, chain, index):
    step = chain[index]
    return Written(step.left, step.op, step.right, slip(rng, step.result, minimum=0)), None


def _copy(rng, template, quantities, chain, index):
    step, operand = chain[index], rng.randrange(2)
    true = (step.left, step.right)[operand]
    source = sources(template)[index][operand]
    others = sorted({v for v in quantities.values() if v != true}) if source.startswith("question:") else []
    wrong = rng.choice(others) if others and rng.random() < 0.3 else slip(rng, true)
    if wrong == stale_value(template, chain, source):
        return None  # that would be a contradiction, not a copying slip
    left, right = (wrong, step.right) if operand == 0 else (step.left, wrong)
    result = apply(step.op, left, right)
    return (None if result is None else Written(left, step.op, right, result)), operand


def _operation(rng, template, quantities, chain, index):
    step = chain[index]
    op = rng.choice([o for o in OPERATORS if o != step.op])
    result = apply(op, step.left, step.right)
    if result is None or result == step.result:
        return None
    return Written(step.left, op, step.right, result), None


def contradiction_operands(template: Template, chain: Sequence[Written], index: int) -> list[int]:
    """Operands of step `index` that could be replaced by a value an earlier step already changed."""
    step, where = chain[index], sources(template)[index]
    return [i for i in (0, 1) if stale_value(template, chain, where[i]) not in (None, (step.left, step.right)[i])]


def _contradiction(rng, template, quantities, chain, index):
    step, operand = chain[index], rng.choice(contradiction_operands(template, chain, index))
    stale = stale_value(template, chain, sources(template)[index][operand])
    left, right = (stale, step.right) if operand == 0 else (step.left, stale)
    result = apply(step.op, left, right)
    return (None if result is None else Written(left, step.op, right, result)), operand


ERROR_MAKERS: dict[str, ErrorMaker] = {"arithmetic": _arithmetic, "copy": _copy, "operation": _operation,
                                       "contradiction": _contradiction}


def inject(rng: random.Random, template: Template, quantities: Mapping[str, int], chain: list[Written],
           kind: str) -> tuple[list[Written], dict[str, Any]] | None:
    """The chain with one error of `kind` at a random step and later steps recomputed, or None if none fits.

    The step is drawn first and only the error's details are retried, so that errors sit at every position
    about equally often (retrying positions would favour the last step, after which nothing must divide).
    """
    positions = [i for i in range(len(chain)) if kind != "contradiction" or contradiction_operands(template, chain, i)]
    if not positions:
        return None
    index = rng.choice(positions)
    for _ in range(ERROR_TRIES):
        made = ERROR_MAKERS[kind](rng, template, quantities, chain, index)
        if made is None or made[0] is None:
            continue
        wrong, operand = made
        changed = run_chain(template, quantities, override=(index, wrong), limit=MAX_WRONG_VALUE)
        if changed is not None:
            return changed, {"step": index, "kind": kind, "operand": operand}
    return None


# -- problems ------------------------------------------------------------------------------------
def split_of(question: str) -> str:
    share = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big") / 2 ** 64
    return next(name for name, (low, high) in SPLIT_BUCKETS.items() if low <= share < high)


def draw_problem(rng: random.Random, *, problem_id: str, split: str, error_kind: str | None,
                 taken: set[str]) -> Problem:
    """A new problem of `split` (its text hashes there and is not in `taken`), with an error of `error_kind`."""
    while True:
        template = rng.choice(TEMPLATES)
        name, pronoun = rng.choice(PEOPLE)
        words = {"name": name, **PRONOUNS[pronoun], **{slot: rng.choice(options)
                                                       for slot, options in template.words.items()}}
        drawn = _draw_quantities(rng, template)
        if drawn is None:
            continue
        quantities, chain = drawn
        question = template.question.format(**words, **quantities)
        if question in taken or split_of(question) != split:
            continue
        error = None
        if error_kind is not None:
            injected = inject(rng, template, quantities, chain, error_kind)
            if injected is None:
                continue
            chain, error = injected
        taken.add(question)
        names = {quantity: phrase.format(**words) for quantity, phrase in template.names.items()}
        return Problem(problem_id, split, template.name, question, quantities,
                       _steps(template, words, chain), run_chain(template, quantities)[-1].result, error, names)


def _draw_quantities(rng: random.Random, template: Template) -> tuple[dict[str, int], list[Written]] | None:
    for _ in range(QUANTITY_TRIES):
        quantities = {name: rng.randint(low, high) for name, (low, high) in template.quantities.items()}
        chain = run_chain(template, quantities)
        if chain is not None:
            return quantities, chain
    return None


def _steps(template: Template, words: Mapping[str, str], chain: Sequence[Written]) -> tuple[Step, ...]:
    steps = []
    for index, (op, written, where) in enumerate(zip(template.ops, chain, sources(template), strict=True)):
        text = op.text.format(**words, expr=expression(written.left, written.op, written.right, written.result))
        if index == len(chain) - 1:
            text += f" The answer is {written.result}."
        steps.append(Step(text, written.left, written.op, written.right, written.result, where, op.op,
                          op.goal.format(**words)))
    return tuple(steps)


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig(JobConfig):
    """Settings of one generated data set; every field is a command-line option."""

    out: str = option(help="Folder to write train.jsonl, dev/, test/ and manifest.json to.")
    train: int = option(2000, help="Problems in the train split (JSONL with per-step labels).")
    dev: int = option(200, help="Problems in the dev split (ProcessBench JSON).")
    test: int = option(200, help="Problems in the test split (ProcessBench JSON).")
    seed: int = option(0, help="Seed; the same seed and sizes give the same files.")
    error_share: float = option(0.5, help="Share of solutions with an injected error, 0 to 1.")
    train_error_share: float = option(-1.0, help="The same for the train split only (-1: --error-share).")
    error_kinds: str = option(",".join(ERROR_KINDS), help="Comma-separated kinds of injected errors.")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind.strip() for kind in self.error_kinds.split(",") if kind.strip())

    def split_error_share(self, split: str) -> float:
        return self.train_error_share if split == "train" and self.train_error_share != -1 else self.error_share

    def problems(self):
        yield from settings_problems({split: getattr(self, split) for split in SPLITS}, self.error_share, self.kinds)
        if self.train_error_share != -1:
            yield from settings_problems({}, self.train_error_share, self.kinds)
        if not any(getattr(self, split) for split in SPLITS):
            yield "every split size is 0; ask for at least one problem with --train, --dev or --test"


def settings_problems(sizes: Mapping[str, Any], error_share: Any, error_kinds: Sequence[str]) -> Iterator[str]:
    for split, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            yield f"{split} must be a whole number >= 0, got {size!r}"
    if isinstance(error_share, bool) or not isinstance(error_share, (int, float)) or not 0 <= error_share <= 1:
        yield f"error-share must be a number between 0 and 1, got {error_share!r}"
    unknown = [kind for kind in error_kinds if kind not in ERROR_KINDS]
    if unknown or not error_kinds:
        yield (f"unknown error kind {', '.join(map(repr, unknown)) or '(none given)'}; "
               f"expected some of {', '.join(ERROR_KINDS)}")


def generate_split(split: str, size: int, *, seed: int, error_share: float = 0.5,
                   error_kinds: Sequence[str] = ERROR_KINDS) -> list[Problem]:
    """`size` problems of one split; round(size * error_share) of them carry an error, kinds in equal shares."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    problems = list(settings_problems({split: size}, error_share, error_kinds))
    if problems:
        raise InputError("invalid settings: " + "; ".join(problems))
    plan_rng = random.Random(f"{GENERATOR}:{seed}:{split}:errors")
    wrong = round(size * error_share)
    kinds = [error_kinds[i % len(error_kinds)] for i in range(wrong)] + [None] * (size - wrong)
    plan_rng.shuffle(kinds)
    rng = random.Random(f"{GENERATOR}:{seed}:{split}")
    taken: set[str] = set()
    return [draw_problem(rng, problem_id=f"synth-{split}-{i:05d}", split=split, error_kind=kind, taken=taken)
            for i, kind in enumerate(kinds)]


def generate(config: SyntheticConfig) -> dict[str, list[Problem]]:
    return {split: generate_split(split, getattr(config, split), seed=config.seed,
                                  error_share=config.split_error_share(split), error_kinds=config.kinds)
            for split in SPLITS}


def write_dataset(config: SyntheticConfig) -> dict[str, Path]:
    """Write train.jsonl, dev/ and test/ ProcessBench folders and manifest.json under `config.out`."""
    out = Path(config.out)
    splits = generate(config)
    written: dict[str, Path] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        if splits["train"]:
            written["train"] = out / "train.jsonl"
            written["train"].write_text("".join(json.dumps(p.item()) + "\n" for p in splits["train"]),
                                        encoding="utf-8")
        for split in ("dev", "test"):
            if splits[split]:
                written[split] = out / split / f"{PROCESSBENCH_SUBSET}.json"
                written[split].parent.mkdir(exist_ok=True)
                written[split].write_text(json.dumps([p.item() for p in splits[split]], indent=1), encoding="utf-8")
        written["manifest"] = out / "manifest.json"
        written["manifest"].write_text(json.dumps(manifest(config, splits), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{out}: cannot write the data set ({exc.strerror})") from None
    return written


def manifest(config: SyntheticConfig, splits: Mapping[str, list[Problem]]) -> dict[str, Any]:
    counts = {split: {"problems": len(problems), "with_error": sum(p.error is not None for p in problems),
                      "error_kinds": dict(sorted(Counter(p.error["kind"] for p in problems if p.error).items())),
                      "labelled_steps": sum(label is not None for p in problems for label in p.step_labels())}
              for split, problems in splits.items()}
    return {"generator": GENERATOR, "config": config.to_dict(),
            "processbench_subset": PROCESSBENCH_SUBSET, "splits": counts}


def read_problems(path: str | Path) -> list[Problem]:
    """Problems from a file this module wrote (train JSONL or a ProcessBench JSON), via the solution reader."""
    return [Problem.from_item({"id": s.id, "problem": s.question, "steps": s.steps, **s.extra},
                              where=f"{path}: {s.id}") for s in read_solutions(path)]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rprm_lite.training.synthetic --out DIR ...`: the flags are SyntheticConfig's fields."""
    parser = SyntheticConfig.argument_parser("python -m rprm_lite.training.synthetic", __doc__.split("\n")[0])
    try:
        config = SyntheticConfig(**vars(parser.parse_args(argv)))
        written = write_dataset(config)
    except RprmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    counts = json.loads(written["manifest"].read_text(encoding="utf-8"))["splits"]
    for split, path in written.items():
        detail = f" ({counts[split]['problems']} problems, {counts[split]['with_error']} with an error)" \
            if split in counts else ""
        print(f"{split}: {path}{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
