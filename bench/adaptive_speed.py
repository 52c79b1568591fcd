"""Seconds per scored step with fixed K and with adaptive K, in one run, on the speed suite's random model.

    python -m rprm_lite.bench.adaptive_speed [--shape qwen2.5-0.5b|tiny] [--k 10] [--tokens 64]
                                             [--threads 2] [--repeats 2] [--out bench/results]

Each measurement is the speed suite's rprm-lite child (its own process, fixed-length critiques, end-of-text
banned) on the first step of its solution from an empty cache; adaptive K uses the runtime's defaults. The
two variants alternate, `repeats` times each, so a change in the machine's load hits both; wall time and the
process's CPU time (every thread; less sensitive to other load) are reported, with their median ratios.
Random weights decide where adaptive K stops (reported as critiques per step); `bench adaptive-study`
measures that on real critiques.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

from rprm_lite.markdown import table

from .report_files import DEFAULT_OUT, write_report
from .shapes import SCORING_SHAPES
from .speed import DEFAULT_LOGIT_SCALE
from .speed_jobs import STEPS, Child, Job
from .speed_models import build_model


def measure(job: Job, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {"fixed": [], "adaptive": []}
    for repeat in range(repeats):
        order = ("fixed", "adaptive") if repeat % 2 == 0 else ("adaptive", "fixed")
        for name in order:
            runs[name].append(Child()("rprm-lite", replace(job, adaptive=name == "adaptive")))
    summary: dict = {"variants": {name: {"seconds_per_step": [r["mean_seconds_per_step"] for r in rs],
                                         "cpu_seconds": [r["cpu_seconds"] for r in rs],
                                         "critiques_per_step": rs[0]["critiques_per_step"]}
                                  for name, rs in runs.items()}}
    pairs = list(zip(runs["fixed"], runs["adaptive"], strict=True))
    summary["wall_ratio"] = statistics.median(f["mean_seconds_per_step"] / a["mean_seconds_per_step"] for f, a in pairs)
    summary["cpu_ratio"] = statistics.median(f["cpu_seconds"] / a["cpu_seconds"] for f, a in pairs)
    return summary


def render(result: dict) -> str:
    rows = [(name, f"{r['critiques_per_step']:.1f}", ", ".join(f"{s:.2f}" for s in r["seconds_per_step"]),
             ", ".join(f"{s:.2f}" for s in r["cpu_seconds"])) for name, r in result["runs"]["variants"].items()]
    job = result["job"]
    return (f"## Fixed K vs adaptive K per scored step ({Path(job['model']).name}, K={job['k']}, "
            f"{job['tokens']}-token critiques, {job['threads']} threads)\n\n"
            + table(("variant", "critiques/step", "s/step (each run)", "CPU s (each run)"), rows)
            + f"\n\nMedian ratio fixed / adaptive: wall {result['runs']['wall_ratio']:.2f}x, "
              f"CPU {result['runs']['cpu_ratio']:.2f}x.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SCORING_SHAPES, default="qwen2.5-0.5b")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    model = build_model(args.shape, "Q8_0", args.out / "models", logit_scale=DEFAULT_LOGIT_SCALE)
    job = Job(str(model), k=args.k, tokens=args.tokens, threads=args.threads, steps=STEPS[:1])
    runs = measure(job, args.repeats)
    result = {"job": {"model": str(model), "k": args.k, "tokens": args.tokens, "threads": args.threads,
                      "repeats": args.repeats}, "runs": runs}
    write_report(args.out, "adaptive_speed", result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
