"""A programmatic teacher for the synthetic problems: short critiques in the R-PRM structure.

The teacher recomputes each step from the problem's record: where each operand must come from (a
number of the question or the result of an earlier step), which operation the step's goal needs, and
the arithmetic. It writes what it finds under the section headers the R-PRM prompt asks for and ends
with the verification line. Critiques are short and regular so that a tiny model can learn them.

With probability `wrong_share` per critique the teacher is mistaken, and its text follows the mistake:
on a right step it misreads a source, miscalculates or misjudges the operation and says No; on a wrong
step it takes the written numbers at face value and says Yes. Such critiques are what the seed-data
filter (`rprm_lite.training.critiques.judge`) must drop.

`SyntheticTeacher` serves the training package's `Teacher` protocol, so `build_seed_data` can use it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from rprm_lite.demo_model.column_arithmetic import worked
from rprm_lite.demo_model.synthetic import slip
from rprm_lite.demo_model.synthetic_problems import GENERATOR, SYMBOLS, Problem, Step, apply
from rprm_lite.errors import InputError
from rprm_lite.prompt import VERDICT_PHRASE
from rprm_lite.solution import Solution
from rprm_lite.training.critiques import find_verdict
from rprm_lite.training.teacher import Task, task_seed

SECTION_HEADERS = ("**Previous Steps Analysis**", "**Now Step Analysis**", "**Data Source Analysis**",
                   "**Consistency Analysis**", "**Calculation Analysis**", "Conclusion:")
VERIFICATION = "Verification: " + VERDICT_PHRASE
OP_NOUNS = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
OP_VERBS = {"+": "adds", "-": "subtracts", "*": "multiplies", "/": "divides"}
MISTAKES = ("source", "calculation", "operation")  # how a mistaken teacher faults a right step
SAME, NOT_SAME = "the same", "not the same"  # the word after every compared pair
ORDINALS = ("first", "second")
# how a calculation check derives its result: "89 - 72 = 17" in one go (the default), or by columns with a
# quotient multiplied back (measured on a fresh seed: more false alarms than slips caught; MODEL_CARD.md)
ARITHMETIC = ("whole", "columns")
# how the Now Step Analysis reaches the operation: from the goal alone ("finds the children present, which needs
# subtraction"), or from the goal and the question's words for both operands first ("finds the children present
# from the children in the class and the children absent, which needs subtraction"), so the operation is read
# off the question's words rather than the step's own sign
OPERATION = ("goal", "sources")


@dataclass(frozen=True)
class Belief:
    """What the teacher takes to be right for the Now Step; the critique compares the step against it."""

    operands: tuple[int, int]  # the values the sources hold
    op: str  # the operation the goal needs
    computed: int | None  # the teacher's own result of the written expression (None: does not divide)


def critique(problem: Problem, step_index: int, *, rng: random.Random, wrong_share: float = 0.0,
             arithmetic: str = "whole", operation: str = "goal") -> str:
    """A critique of step `step_index` (0-based); with probability `wrong_share` its verdict is wrong.
    `arithmetic`: how the calculation check derives its result (`ARITHMETIC`); `operation`: how the Now Step
    Analysis reaches the operation (`OPERATION`)."""
    check_step(problem, step_index)
    if not 0 <= wrong_share <= 1:
        raise InputError(f"wrong_share must be between 0 and 1, got {wrong_share}")
    belief = true_belief(problem, step_index)
    if rng.random() < wrong_share:
        belief = mistaken_belief(problem, step_index, belief, rng)
    return write(problem, step_index, belief, columns=arithmetic == "columns", operation=operation)


def contrast(problem: Problem, step_index: int, *, rng: random.Random,
             arithmetic: str = "whole", operation: str = "goal") -> tuple[str, str]:
    """(chosen, rejected): the honest critique of a step, and the mistaken teacher's critique of it, whose verdict
    is the opposite. On a wrong step the mistaken one takes the written numbers at face value: it copies the
    step's own result into the calculation check ("36 + 7 = 44; ... 44 vs 44, the same"), the failure a model
    that copies instead of computing shows; on a right step it misreads a number, miscalculates or misjudges
    the operation."""
    check_step(problem, step_index)
    honest = true_belief(problem, step_index)
    mistaken = mistaken_belief(problem, step_index, honest, rng)
    columns = arithmetic == "columns"
    return (write(problem, step_index, honest, columns=columns, operation=operation),
            write(problem, step_index, mistaken, columns=columns, operation=operation))


def contrast_records(problems: list[Problem], *, seed: int, prompt_style: str) -> Iterator[dict]:
    """Preference pairs from the teacher, in the format `rprm-lite data pairs` writes: for each problem its first
    error step (if it has one) and one right step before it or, without an error, one of its steps."""
    for problem in problems:
        rng = random.Random(f"contrast:{seed}:{problem.id}")
        right = [i for i, label in enumerate(problem.step_labels()) if label]
        chosen_steps = ([problem.label] if problem.label != -1 else []) + ([rng.choice(right)] if right else [])
        for index in sorted(chosen_steps):
            chosen, rejected = contrast(problem, index, rng=rng)
            solution = problem.solution()
            yield {"id": problem.id, "step": index + 1, "label": "correct" if index != problem.label else "wrong",
                   "question": solution.question, "steps": list(solution.steps), "prompt_style": prompt_style,
                   "model": "teacher", "outcome": "teacher_contrast",
                   "samples": [{"critique": chosen}, {"critique": rejected}], "pairs": [[0, 1]]}


def verdict_of(critique: str) -> bool | None:
    """True for "... (Yes/No)? Yes", False for No, None when the critique gives no verdict."""
    verdict = find_verdict(critique)
    return None if verdict is None else verdict.says_correct


def check_step(problem: Problem, step_index: int) -> None:
    n_steps = len(problem.steps)
    if not 0 <= step_index < n_steps:
        raise InputError(f"{problem.id}: step index {step_index} is out of range; the solution has {n_steps} "
                         f"steps (0..{n_steps - 1})")
    if problem.label != -1 and step_index > problem.label:
        raise InputError(f"{problem.id}: step {step_index + 1} comes after the first error (step "
                         f"{problem.label + 1}), so it has no label to critique against")


def source_value(problem: Problem, source: str) -> int:
    kind, _, key = source.partition(":")
    return problem.quantities[key] if kind == "question" else problem.steps[int(key)].result


def true_belief(problem: Problem, step_index: int) -> Belief:
    step = problem.steps[step_index]
    operands = (source_value(problem, step.sources[0]), source_value(problem, step.sources[1]))
    return Belief(operands, step.intended_op, apply(step.op, step.left, step.right))


def mistaken_belief(problem: Problem, step_index: int, honest: Belief, rng: random.Random) -> Belief:
    """A belief whose verdict is the opposite of the honest one, reached by a plausible slip."""
    step = problem.steps[step_index]
    if not is_right(step, honest):
        return Belief((step.left, step.right), step.op, step.result)  # overlooks the error
    mistake = rng.choice(MISTAKES)
    if mistake == "source":
        operand = rng.randrange(2)
        misread = slip(rng, honest.operands[operand])
        return Belief((misread, honest.operands[1]) if operand == 0 else (honest.operands[0], misread),
                      honest.op, honest.computed)
    if mistake == "calculation":
        return Belief(honest.operands, honest.op, slip(rng, step.result, minimum=0))
    return Belief(honest.operands, rng.choice([op for op in SYMBOLS if op != step.op]), honest.computed)


def is_right(step: Step, belief: Belief) -> bool:
    return (step.left, step.right) == belief.operands and step.op == belief.op and step.result == belief.computed


def write(problem: Problem, step_index: int, belief: Belief, *, columns: bool = False,
          operation: str = "goal") -> str:
    """The critique: each check derives what the step should be, then quotes what the step wrote right after
    it and says whether the two are the same ("52 vs 51, not the same"). A pretrained small model copies numbers
    at once but learns to compare them only when the pair and the decision sit side by side (pilot 3 of
    ../shared/pilot/pretrained: greedy dev F1 37.9 with the pair apart, 63.2 adjacent, same budget)."""
    step = problem.steps[step_index]
    sources, faults, contradicted = data_sources(problem, step, belief)
    consistency = f"It needs {OP_NOUNS[belief.op]}; the Now Step {OP_VERBS[step.op]}: {same(belief.op, step.op)}."
    if step.op != belief.op:
        faults.insert(0, "uses the wrong operation")
    if contradicted is not None:
        earlier = problem.steps[contradicted]
        consistency += f" Step {contradicted + 1} found {earlier.result}, so the Now Step contradicts it."
    calculation, calculation_ok = calculation_check(step, belief, columns=columns)
    if not calculation_ok:
        faults.append("has a calculation error")
    conclusion = "The Now Step is correct." if not faults else f"The Now Step {join(faults)}, so it is wrong."
    return "\n".join((
        f"{SECTION_HEADERS[0]}: {previous_steps(problem, step_index)}",
        f"{SECTION_HEADERS[1]}: {now_step(problem, step, belief, operation)}",
        f"{SECTION_HEADERS[2]}: {sources}",
        f"{SECTION_HEADERS[3]}: {consistency}",
        f"{SECTION_HEADERS[4]}: {calculation}",
        f"{SECTION_HEADERS[5]} {conclusion}",
        f"{VERIFICATION} {'No' if faults else 'Yes'}",
    ))


def now_step(problem: Problem, step: Step, belief: Belief, operation: str) -> str:
    """What the Now Step finds and the operation that needs (`OPERATION`: with "sources", the question's words for
    both operands come between them)."""
    if operation not in OPERATION:
        raise InputError(f"operation must be one of {', '.join(OPERATION)}, got {operation!r}")
    operands = ""
    if operation == "sources":
        operands = f" from {source_words(problem, step.sources[0])} and {source_words(problem, step.sources[1])}"
    return f"The Now Step finds {step.goal}{operands}, which needs {OP_NOUNS[belief.op]}."


def same(needed: object, written: object) -> str:
    return SAME if needed == written else NOT_SAME


def calculation_check(step: Step, belief: Belief, *, columns: bool = False) -> tuple[str, bool]:
    """The teacher's own result of the written expression first, then the step's; True when they agree.

    With `columns` an honest teacher works it out column by column (`column_arithmetic`) and checks a quotient
    by multiplying it back; a mistaken one (`wrong_share`) states its wrong result in one go."""
    expression = f"{step.left} {SYMBOLS[step.op]} {step.right}"
    honest = columns and belief.computed == apply(step.op, step.left, step.right)
    if honest and step.op == "/":
        return division_check(step)
    if belief.computed is None:
        why = "does not divide evenly" if step.op == "/" else "is below zero"
        return f"{expression} {why}; the Now Step writes {step.result}: {NOT_SAME}.", False
    work = worked(step.left, step.op, step.right) if honest else None
    derived = f"{expression} = {belief.computed}" if work is None else work[0]
    return (f"{derived}; the Now Step writes {step.result}: {belief.computed} vs {step.result}, "
            f"{same(belief.computed, step.result)}.", belief.computed == step.result)


def division_check(step: Step) -> tuple[str, bool]:
    """A quotient is checked by multiplying it back: "48 ÷ 6: the Now Step writes 9; 9 × 6 = 54: 54 vs 48, not
    the same." (forward one-digit facts, where dividing would need a search)."""
    expression = f"{step.left} {SYMBOLS[step.op]} {step.right}"
    work = worked(step.result, "*", step.right) if step.result >= 0 else None
    if work is None:  # two factors of two digits or more: the quotient in one go, as before
        computed = apply(step.op, step.left, step.right)
        if computed is None:
            return f"{expression} does not divide evenly; the Now Step writes {step.result}: {NOT_SAME}.", False
        return (f"{expression} = {computed}; the Now Step writes {step.result}: {computed} vs {step.result}, "
                f"{same(computed, step.result)}.", computed == step.result)
    text, product = work
    return (f"{expression}: the Now Step writes {step.result}, and {text}: {product} vs {step.left}, "
            f"{same(product, step.left)}.", product == step.left)


def previous_steps(problem: Problem, step_index: int) -> str:
    if step_index == 0:
        return "There are no Previous Steps."
    if step_index == 1:
        return "Step 1 is correct."
    return f"Steps 1 to {step_index} are correct."


def source_words(problem: Problem, source: str) -> str:
    """What a source holds, in words: "the muffins sold" (question) or the earlier step's goal."""
    kind, _, key = source.partition(":")
    if kind == "question":
        return problem.names.get(key, "the number " + key.replace("_", " "))
    return problem.steps[int(key)].goal


def origin(source: str) -> str:
    kind, _, key = source.partition(":")
    return "the question" if kind == "question" else f"Step {int(key) + 1}"


def data_sources(problem: Problem, step: Step, belief: Belief) -> tuple[str, list[str], int | None]:
    """The data source text (each needed value, then the step's, compared), its faults, a contradicted step."""
    parts: list[str] = []
    faults: list[str] = []
    contradicted = None
    for n, (written, expected, source) in enumerate(zip((step.left, step.right), belief.operands, step.sources,
                                                        strict=True)):
        text = (f"The {ORDINALS[n]} number it needs is {source_words(problem, source)}, {expected} from "
                f"{origin(source)}; the Now Step uses {written}: {expected} vs {written}, {same(expected, written)}")
        if written != expected:
            stale_of = stale_step(problem, source, written)
            if stale_of is not None and expected == problem.steps[stale_of].result:
                contradicted = stale_of
                text += f", {expected} is the number after Step {stale_of + 1}"
                faults.append(f"contradicts Step {stale_of + 1}")
            else:
                faults.append("uses a wrong number")
        parts.append(text + ".")
    parts.append("So the data is right." if not faults else "So the data is wrong.")
    return " ".join(parts), faults, contradicted


def stale_step(problem: Problem, source: str, written: int) -> int | None:
    """Step j when `written` is the value step j started from: the Now Step ignores what step j did."""
    if not source.startswith("step:"):
        return None
    earlier = int(source.split(":")[1])
    step = problem.steps[earlier]
    return earlier if step.intended_op in "+-" and step.left == written else None


def join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class SyntheticTeacher:
    """The training package's `Teacher` for synthetic problems: `build_seed_data(config, teacher=...)`.

    A task's solution must carry its `trace` (the files `rprm_lite.demo_model.synthetic` writes do), or its
    problem must be passed in `problems`. Each (solution, step, sample) gets its own seed from `seed`,
    so results do not depend on task order and a resumed run writes the same critiques.
    """

    name = f"{GENERATOR}-teacher"

    def __init__(self, *, seed: int = 0, wrong_share: float = 0.1,
                 problems: Mapping[str, Problem] | None = None, arithmetic: str = "whole",
                 operation: str = "goal") -> None:
        if not 0 <= wrong_share <= 1:
            raise InputError(f"wrong_share must be between 0 and 1, got {wrong_share}")
        if arithmetic not in ARITHMETIC:
            raise InputError(f"arithmetic must be one of {', '.join(ARITHMETIC)}, got {arithmetic!r}")
        if operation not in OPERATION:
            raise InputError(f"operation must be one of {', '.join(OPERATION)}, got {operation!r}")
        self.arithmetic = arithmetic
        self.operation = operation
        self.seed = seed
        self.wrong_share = wrong_share
        self.problems = dict(problems or {})

    def critiques(self, tasks: list[Task]) -> Iterator[tuple[Task, str]]:
        for task in tasks:
            problem = self.problem(task.step.solution)
            rng = random.Random(task_seed(self.seed, task))
            yield task, critique(problem, task.step.index, rng=rng, wrong_share=self.wrong_share,
                                 arithmetic=self.arithmetic, operation=self.operation)

    def problem(self, solution: Solution) -> Problem:
        problem = self.problems.get(solution.id)
        if problem is None:
            problem = Problem.from_item({"id": solution.id, "problem": solution.question, "steps": solution.steps,
                                         **solution.extra}, where=f"solution {solution.id!r}")
            self.problems[solution.id] = problem
        if tuple(step.text for step in problem.steps) != solution.steps:
            raise InputError(f"solution {solution.id!r}: its steps differ from the synthetic problem's record; "
                             "the synthetic teacher only judges solutions written by the generator")
        return problem
