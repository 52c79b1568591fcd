"""Re-scoring an edited solution with the step cache: the time saved for an edit at step k.

    python -m rprm_lite.bench.rescore_speed [--model PATH] [--solution FILE] [--k N] [--max-tokens N]
                                            [--seed 0] [--out bench/results]

For each k = 1..n of an n-step solution: a scorer whose cache holds the original solution (scored first,
not timed) scores the solution with step k edited, against a scorer without a cache scoring the same
edited solution, one after the other (the order alternates with k) so both see the same machine load.
Every step is scored (`all_steps`), so the work is the same whatever the verdicts. With the cache, steps
1..k-1 are reused and only their prompts are decoded again before step k (so the KV cache is filled as
without the cache); the table checks that every result is identical. Defaults: the bundled demo model,
`examples/solution.json`, the model's own settings. Prints a markdown table and writes rescore_speed.json
and rescore_speed.md (never a test).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.markdown import table
from rprm_lite.solution import Solution, read_solutions

DEFAULT_SOLUTION = Path(__file__).resolve().parents[1] / "examples" / "solution.json"
EDIT = " (checked again)"  # appended to step k: a small edit that changes its tokens


def edited(solution: Solution, k: int) -> Solution:
    steps = list(solution.steps)
    steps[k - 1] += EDIT
    return Solution(question=solution.question, steps=tuple(steps), id=f"{solution.id}-edit{k}")


def measure(model: Path | None, solution: Solution, settings: dict[str, Any], *, repeats: int = 1
            ) -> list[dict[str, Any]]:
    """One row per edited step k: the least over `repeats` of wall and CPU seconds, both ways (the run
    least disturbed by other work on the machine, as `timeit` reports)."""
    runs = [_measure_once(model, solution, settings) for _ in range(repeats)]
    rows = []
    for per_k in zip(*runs, strict=True):
        row = {key: per_k[0][key] for key in ("edited_step", "steps", "reused_steps", "critique_tokens_reused")}
        for key in ("seconds_uncached", "seconds_cached", "cpu_seconds_uncached", "cpu_seconds_cached"):
            row[key] = min(r[key] for r in per_k)
        row["saved"] = 1 - row["seconds_cached"] / row["seconds_uncached"]
        row["cpu_saved"] = 1 - row["cpu_seconds_cached"] / row["cpu_seconds_uncached"]
        row["identical"] = all(r["identical"] for r in per_k)
        rows.append(row)
    return rows


def _measure_once(model: Path | None, solution: Solution, settings: dict[str, Any]) -> list[dict[str, Any]]:
    from rprm_lite.scoring import Scorer
    from rprm_lite.step_cache import StepCache

    rows = []
    with Scorer(model, **settings) as cached, Scorer(model, cache=StepCache(max_entries=0), **settings) as plain:
        plain.score_solution(solution)  # warm both the same way: contexts sized, pages touched
        for k in range(1, len(solution.steps) + 1):
            cached.step_cache = StepCache()
            cached.score_solution(solution)  # the original, now in the cache (not timed)
            change = edited(solution, k)
            took, cpu, results = {}, {}, {}
            for name, scorer in ((("cached", cached), ("plain", plain)) if k % 2 else
                                 (("plain", plain), ("cached", cached))):
                start, start_cpu = time.perf_counter(), time.process_time()
                results[name] = scorer.score_solution(change)
                took[name], cpu[name] = time.perf_counter() - start, time.process_time() - start_cpu
            rows.append({"edited_step": k, "steps": len(solution.steps), "reused_steps": cached.step_cache.hits,
                         "seconds_uncached": took["plain"], "seconds_cached": took["cached"],
                         "cpu_seconds_uncached": cpu["plain"], "cpu_seconds_cached": cpu["cached"],
                         "identical": results["cached"].steps == results["plain"].steps,
                         # the work the cache skips, independent of machine load
                         "critique_tokens_reused": sum(s.generated_tokens for s in results["plain"].steps[:k - 1])
                         / sum(s.generated_tokens for s in results["plain"].steps)})
    return rows


def report_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    body = [(r["edited_step"], r["reused_steps"], f"{r['critique_tokens_reused']:.0%}",
             f"{r['seconds_uncached']:.2f}", f"{r['seconds_cached']:.2f}", f"{r['saved']:.0%}",
             f"{r['cpu_saved']:.0%}", "yes" if r["identical"] else "NO") for r in rows]
    title = (f"Re-scoring a {rows[0]['steps']}-step solution after an edit at step k ({meta['model']}, "
             f"K={meta['k']}, max_tokens={meta['max_tokens']})\n\n")
    title += f"Best of {meta['repeats']} run(s) each way; CPU time counts every thread of the process.\n\n"
    header = ("edited step k", "steps reused", "critique tokens reused", "s without cache", "s with cache",
              "time saved", "CPU time saved", "identical results")
    return title + table(header, body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF model (default: the demo model)")
    parser.add_argument("--solution", type=Path, default=DEFAULT_SOLUTION, help="a solution file (its first)")
    parser.add_argument("--k", type=int, default=None, help="critiques per step (default: the model's)")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="runs per edit; the table shows the best")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    settings = {name: value for name, value in (("k", args.k), ("max_tokens", args.max_tokens)) if value is not None}
    settings.update(seed=args.seed, all_steps=True)
    solution = read_solutions(str(args.solution))[0]
    rows = measure(args.model, solution, settings, repeats=args.repeats)
    from rprm_lite.scoring import Scorer

    with Scorer(args.model, **settings) as scorer:
        meta = {"model": scorer.model_info.path.name, "repeats": args.repeats, **scorer.run_metadata()}
    result = {"benchmark": "rescore_speed", "solution": str(args.solution), "edit": EDIT, "config": meta,
              "rows": rows}
    write_report(args.out, "rescore_speed", json.loads(json.dumps(result)), report_table(rows, meta))
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
