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

    python -m rprm_lite.demo_model.synthetic --out data/synthetic --train 2000 --dev 200 --test 200 --seed 0

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rprm_lite.demo_model.synthetic_problems import (
    ERROR_KINDS,
    GENERATOR,
    OPERATORS,
    Problem,
    Step,
    Written,
    apply,
    expression,
    run_chain,
    sources,
)
from rprm_lite.demo_model.synthetic_templates import PEOPLE, PRONOUNS, TEMPLATES, Template
from rprm_lite.errors import InputError
from rprm_lite.training.jobconfig import JobConfig, option

SPLITS = ("train", "dev", "test")
# a problem whose text hashes into a split's share of [0, 1) can only ever appear in that split
SPLIT_BUCKETS = {"test": (0.0, 0.1), "dev": (0.1, 0.2), "train": (0.2, 1.0)}
PROCESSBENCH_SUBSET = "gsm8k"  # the harness loads <subset>.json and knows only ProcessBench's names
MAX_WRONG_VALUE = 999  # numbers after an injected error may leave that range, not this one
QUANTITY_TRIES = 500
ERROR_TRIES = 30


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
    error_kinds: str = option(",".join(ERROR_KINDS), help="Comma-separated kinds of injected errors; a kind named n "
                                                          "times is drawn n times as often.")
    train_error_kinds: str = option("", help="The same for the train split only (empty: --error-kinds).")

    @property
    def kinds(self) -> tuple[str, ...]:
        return kind_list(self.error_kinds)

    def split_kinds(self, split: str) -> tuple[str, ...]:
        return kind_list(self.train_error_kinds) if split == "train" and self.train_error_kinds else self.kinds

    def split_error_share(self, split: str) -> float:
        return self.train_error_share if split == "train" and self.train_error_share != -1 else self.error_share

    def problems(self):
        yield from settings_problems({split: getattr(self, split) for split in SPLITS}, self.error_share, self.kinds)
        if self.train_error_share != -1 or self.train_error_kinds:
            yield from settings_problems({}, self.split_error_share("train"), self.split_kinds("train"))
        if not any(getattr(self, split) for split in SPLITS):
            yield "every split size is 0; ask for at least one problem with --train, --dev or --test"


def kind_list(text: str) -> tuple[str, ...]:
    return tuple(kind.strip() for kind in text.split(",") if kind.strip())


def settings_problems(sizes: Mapping[str, Any], error_share: Any, error_kinds: Sequence[str]) -> Iterator[str]:
    for split, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            yield f"{split} must be a whole number >= 0, got {size!r}"
    if isinstance(error_share, bool) or not isinstance(error_share, (int, float)) or not 0 <= error_share <= 1:
        yield f"error-share must be a number between 0 and 1, got {error_share!r}"
    yield from kind_problems(error_kinds)


def kind_problems(error_kinds: Sequence[str]) -> Iterator[str]:
    unknown = [kind for kind in error_kinds if kind not in ERROR_KINDS]
    if unknown or not error_kinds:
        yield (f"unknown error kind {', '.join(map(repr, unknown)) or '(none given)'}; "
               f"expected some of {', '.join(ERROR_KINDS)}")


def generate_split(split: str, size: int, *, seed: int, error_share: float = 0.5,
                   error_kinds: Sequence[str] = ERROR_KINDS) -> list[Problem]:
    """`size` problems of one split; round(size * error_share) of them carry an error, each kind in `error_kinds`
    as often as it is named there."""
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
                                  error_share=config.split_error_share(split), error_kinds=config.split_kinds(split))
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rprm_lite.demo_model.synthetic --out DIR ...`: the flags are SyntheticConfig's fields."""
    from rprm_lite.cli import run_program

    parser = SyntheticConfig.argument_parser("python -m rprm_lite.demo_model.synthetic", __doc__.split("\n")[0])
    args = parser.parse_args(argv)

    def write() -> int:
        written = write_dataset(SyntheticConfig(**vars(args)))
        counts = json.loads(written["manifest"].read_text(encoding="utf-8"))["splits"]
        for split, path in written.items():
            detail = f" ({counts[split]['problems']} problems, {counts[split]['with_error']} with an error)" \
                if split in counts else ""
            print(f"{split}: {path}{detail}")
        return 0

    return run_program(write)


if __name__ == "__main__":
    sys.exit(main())
