"""The files in `examples/`: taken from the synthetic test split in id order, never chosen by the model.

    python -m rprm_lite.demo_model.examples --test build/recipe/data/test/gsm8k.json --out examples

Picks the first problem of each error kind (arithmetic, copy, operation, contradiction) and the first two
problems without an error, in id order. With `--model`, a problem that model misjudges (default settings,
seed 0) is skipped for the next one of its kind, and the example records how many were skipped before it
(`skipped_before`), so the choice stays reproducible and the count is reported, never hidden.
`solution.json` is the first of the picked problems with an error (the README's first command shows an
error being caught); `solutions.jsonl` holds all of them. Each carries
`error_kind` and its 1-based `expected_first_error_step` (null when every step is right).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rprm_lite.demo_model.synthetic_problems import ERROR_KINDS, Problem, read_problems
from rprm_lite.errors import InputError

CORRECT_EXAMPLES = 2


def pick(problems: Sequence[Problem], accept: Callable[[Problem], bool] = lambda problem: True
         ) -> list[tuple[Problem, int]]:
    """(problem, skipped before it): the first accepted of each error kind, then the first `CORRECT_EXAMPLES`
    accepted right ones, all in id order."""
    ordered = sorted(problems, key=lambda p: p.id)
    groups = [[p for p in ordered if p.error and p.error["kind"] == kind] for kind in ERROR_KINDS]
    picked = [first_accepted(group, accept) for group in groups]
    right = [p for p in ordered if p.error is None]
    skipped = 0
    for problem in right:
        if len(picked) == len(ERROR_KINDS) + CORRECT_EXAMPLES:
            break
        if accept(problem):
            picked.append((problem, skipped))
            skipped = 0
        else:
            skipped += 1
    return sorted(picked, key=lambda pair: pair[0].id)


def first_accepted(group: Sequence[Problem], accept: Callable[[Problem], bool]) -> tuple[Problem, int]:
    for skipped, problem in enumerate(group):
        if accept(problem):
            return problem, skipped
    raise InputError(f"the model misjudges every one of the {len(group)} test problems with a "
                     f"{group[0].error['kind'] if group and group[0].error else 'given'} error")


def example(problem: Problem, test_file: str, skipped: int = 0) -> dict[str, Any]:
    kind = problem.error["kind"] if problem.error else None
    return {"id": f"{kind}-error" if kind else f"correct-{problem.id.rsplit('-', 1)[-1]}",
            "question": problem.question, "steps": [step.text for step in problem.steps],
            "expected_first_error_step": None if problem.label == -1 else problem.label + 1, "error_kind": kind,
            "source": f"rprm-lite synthetic test split ({test_file}, {problem.id})", "skipped_before": skipped}


def judged_right(model: Path | None) -> Callable[[Problem], bool]:
    """True when `model` (the bundled one for None), at its defaults and seed 0, finds the problem's label."""
    from rprm_lite.scoring import Scorer

    scorer = Scorer(model)

    def accept(problem: Problem) -> bool:
        found = scorer.score(problem.question, [step.text for step in problem.steps]).first_error_step
        return found == (None if problem.label == -1 else problem.label + 1)

    return accept


def write_examples(test_file: Path, out: Path, model: Path | None = None, *, check: bool = False
                   ) -> list[dict[str, Any]]:
    accept = judged_right(model) if check else (lambda problem: True)
    examples = [example(p, test_file.as_posix(), skipped) for p, skipped in pick(read_problems(test_file), accept)]
    first_error = next(e for e in examples if e["error_kind"])
    (out / "solution.json").write_text(json.dumps(first_error, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "solutions.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples),
                                         encoding="utf-8")
    return examples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", type=Path, required=True, help="the test split (ProcessBench JSON)")
    parser.add_argument("--out", type=Path, default=Path("examples"))
    parser.add_argument("--model", type=Path, default=None, help="skip problems this model misjudges (and count)")
    parser.add_argument("--check-bundled", action="store_true", help="the same with the bundled model")
    args = parser.parse_args(argv)
    for item in write_examples(args.test, args.out, args.model, check=args.check_bundled or args.model is not None):
        print(item["id"], item["expected_first_error_step"], f"skipped before: {item['skipped_before']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
