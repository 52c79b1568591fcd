"""The files in `examples/`: taken from the synthetic test split in id order, never chosen by the model.

    python -m rprm_lite.training.demo_examples --test build/recipe/data/test/gsm8k.json --out examples

Picks the first problem of each error kind (arithmetic, copy, operation, contradiction) and the first two
problems without an error, in id order. `solution.json` is the first of the picked problems with an error
(the README's first command shows an error being caught); `solutions.jsonl` holds all of them. Each carries
`error_kind` and its 1-based `expected_first_error_step` (null when every step is right).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rprm_lite.training.synthetic import ERROR_KINDS, Problem, read_problems

CORRECT_EXAMPLES = 2


def pick(problems: Sequence[Problem]) -> list[Problem]:
    """First of each error kind, then the first `CORRECT_EXAMPLES` right ones, all in id order."""
    ordered = sorted(problems, key=lambda p: p.id)
    picked = [next(p for p in ordered if p.error and p.error["kind"] == kind) for kind in ERROR_KINDS]
    picked += [p for p in ordered if p.error is None][:CORRECT_EXAMPLES]
    return sorted(picked, key=lambda p: p.id)


def example(problem: Problem, test_file: str) -> dict[str, Any]:
    kind = problem.error["kind"] if problem.error else None
    return {"id": f"{kind}-error" if kind else f"correct-{problem.id.rsplit('-', 1)[-1]}",
            "question": problem.question, "steps": [step.text for step in problem.steps],
            "expected_first_error_step": None if problem.label == -1 else problem.label + 1, "error_kind": kind,
            "source": f"rprm-lite synthetic test split ({test_file}, {problem.id})"}


def write_examples(test_file: Path, out: Path) -> list[dict[str, Any]]:
    examples = [example(p, test_file.as_posix()) for p in pick(read_problems(test_file))]
    first_error = next(e for e in examples if e["error_kind"])
    (out / "solution.json").write_text(json.dumps(first_error, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "solutions.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples),
                                         encoding="utf-8")
    return examples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", type=Path, required=True, help="the test split (ProcessBench JSON)")
    parser.add_argument("--out", type=Path, default=Path("examples"))
    args = parser.parse_args(argv)
    for item in write_examples(args.test, args.out):
        print(item["id"], item["expected_first_error_step"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
