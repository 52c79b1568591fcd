"""Measure the demo judge (or any model) on a synthetic split, several runs side by side, paired.

    python -m rprm_lite.demo_model.synthetic --out build/fresh --train 1 --dev 1 --test 100 --seed 40404
    python -m rprm_lite.demo_model.measure --data build/fresh/test --out build/measure --threads 2 \\
        plain=k1,calculator-off calculator=k1 k10=k10 adaptive=k10,adaptive

Each RUN is NAME=SETTINGS: `k1` (one greedy critique) or `kN` (N critiques sampled at the released
temperature), `calculator-on` / `calculator-off` (default: the model file's), `adaptive`. Every run scores the
first `--first` problems of the split through the benchmark harness (its predictions in OUT/NAME/, so a run
that stopped resumes); the report is the recipe's table (F1 with a 95% bootstrap interval, error accuracy per
kind) with every run paired against the first, and the seconds per scored step. The model is `--model` with
`--lora`, else the bundled demo (its base and adapter).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError

RUN = re.compile(r"^(?P<name>[\w.+-]+)=(?P<settings>[\w,-]+)$")


def parse_run(text: str) -> tuple[str, dict[str, Any]]:
    """NAME=SETTINGS as (name, evaluate_processbench keywords)."""
    match = RUN.match(text)
    if match is None:
        raise InputError(f"a run is NAME=SETTINGS (e.g. calculator=k1,calculator-on), got {text!r}")
    run: dict[str, Any] = {"k": 1}
    for part in match.group("settings").split(","):
        if re.fullmatch(r"k[1-9]\d{0,2}", part):
            run["k"] = int(part[1:])
        elif part in ("calculator-on", "calculator-off"):
            run["calculator"] = part.split("-")[1]
        elif part == "adaptive":
            run["adaptive"] = True
        else:
            raise InputError(f"run {match.group('name')}: unknown setting {part!r} (kN, calculator-on, "
                             "calculator-off, adaptive)")
    return match.group("name"), run


def main(argv: Sequence[str] | None = None) -> int:
    from rprm_lite.cli import run_program

    return run_program(lambda: measure(argv))


def measure(argv: Sequence[str] | None) -> int:
    from rprm_lite.demo_model.evaluation import evaluate_processbench, item_outcomes, report, timing
    from rprm_lite.demo_model.recipe import first_problems
    from rprm_lite.model_file import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="NAME=SETTINGS, e.g. plain=k1,calculator-off")
    parser.add_argument("--data", type=Path, required=True, help="A synthetic split folder (its gsm8k.json).")
    parser.add_argument("--out", type=Path, required=True, help="A folder for each run's predictions.")
    parser.add_argument("--first", type=int, default=100, help="Problems scored (the split's first).")
    parser.add_argument("--model", help="A model GGUF (default: the bundled demo's base and adapter).")
    parser.add_argument("--lora", action="append", default=[], help="A LoRA adapter GGUF on --model.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=None, help="Default: the model file's.")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    runs = dict(parse_run(text) for text in args.runs)
    if not (args.data / "gsm8k.json").is_file():
        raise InputError(f"{args.data}: no gsm8k.json (a split written by `python -m rprm_lite.demo_model.synthetic`)")
    model, adapters = resolve_model(args.model)
    lora = [str(a) for a in adapters] + args.lora
    data = first_problems(args.data, args.out / "data", args.first)
    results = {}
    for name, run in runs.items():
        folder = args.out / name
        results[name] = evaluate_processbench(model, data, folder, seed=args.seed, max_tokens=args.max_tokens,
                                              lora=lora, threads=args.threads, critiques=True, **run)
        results[name]["run"] = run
        print(f"{name}: F1 {percent(results[name]['f1'])}, error acc {percent(results[name]['error_acc'])}, "
              f"{timing(results[name])}", flush=True)
    outcomes = {name: item_outcomes(data, args.out / name / "predictions.jsonl") for name in runs}
    first = next(iter(runs))
    text = report(outcomes, [(name, first) for name in runs if name != first])
    text += "\n" + "\n".join(f"- {name}: {timing(r)}" for name, r in results.items())
    (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(text)
    return 0


def percent(value: float | None) -> str:
    """A metric, or "-" where the split has no item of its class (F1 of a split of slips alone)."""
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
