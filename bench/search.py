"""Guided search against its baselines: accuracy and cost of greedy, majority@N, best-of-N and guided@N.

    python -m rprm_lite.bench.search --data build/fresh40404/test/gsm8k.json --limit 100 --ns 4,8
                                     [--policy MODEL.gguf] [--policy-lora ADAPTER] [--model JUDGE.gguf]
                                     [--k K] [--no-good-step stop|keep] [--threads 1] [--out bench/results]

Solves the first `--limit` problems of a ProcessBench-format file (the synthetic generator's test split:
`python -m rprm_lite.demo_model.synthetic --out build/fresh40404 --train 1 --dev 1 --test 100 --seed 40404`) with
each strategy, both models loaded once (the policy: the demo base with the bundled policy adapter unless
`--policy`; the judge at its defaults unless `--model`/`--k`). A problem's reference answer is its
`reference_answer`, else the generator's `trace.answer`. Reports per run: accuracy, and per problem the mean
policy tokens, critiques and seconds; a paired bootstrap interval (problems resampled) of guided@N's accuracy
less majority@N's and less greedy's; the process's peak memory; and a plot of accuracy against seconds
(search.png, with matplotlib from the bench extra). Every solved problem is appended to search_records.jsonl in
`--out` as it finishes, so a run that is stopped resumes where it was (the same settings). Writes search.json
and search.md (never a test).
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.errors import InputError
from rprm_lite.jsonl import JsonlWriter, read_json_file, read_jsonl
from rprm_lite.markdown import table
from rprm_lite.solve import STRATEGIES, SolveConfig, answer_key

RECORDS = "search_records.jsonl"
DRAWS = 2000


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str


@dataclass(frozen=True)
class Run:
    strategy: str
    n: int

    @property
    def label(self) -> str:
        return "greedy" if self.strategy == "greedy" else f"{self.strategy}@{self.n}"


def read_problems(path: Path, limit: int) -> list[Problem]:
    items, _ = read_json_file(path, where=str(path))
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON list of problems")
    problems = []
    for number, item in enumerate(items[:limit], start=1):
        question = item.get("question", item.get("problem")) if isinstance(item, dict) else None
        answer = item.get("reference_answer", (item.get("trace") or {}).get("answer")) if question else None
        if not isinstance(question, str) or answer is None:
            raise InputError(f"{path} item {number}: expected 'problem' (or 'question') and 'reference_answer' (or "
                             "the generator's trace.answer)")
        problems.append(Problem(id=str(item.get("id", number)), question=question, answer=str(answer)))
    return problems


def runs(ns: Sequence[int], strategies: Sequence[str]) -> list[Run]:
    chosen = [Run("greedy", 1)] if "greedy" in strategies else []
    return chosen + [Run(s, n) for n in ns for s in strategies if s != "greedy"]


def solve_all(problems: list[Problem], plan: list[Run], solver_args: dict[str, Any], out: Path,
              settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Each problem solved by each run (records already in `out` with these settings are reused)."""
    from rprm_lite.solve import Solver

    done = _done_records(out / RECORDS, settings)
    records: list[dict[str, Any]] = []
    with JsonlWriter(out / RECORDS, fsync=True) as writer:
        base = Solver(solver_args["policy"], solver_args["judge"], policy_lora=solver_args["policy_lora"],
                      config=solver_args["config"], threads=solver_args["threads"],
                      judge_options=solver_args["judge_options"])
        try:
            for run in plan:
                solver = Solver(base.policy, base.judge if run.strategy in ("best-of-n", "guided") else None,
                                config=solver_args["config"].replace(strategy=run.strategy, n=run.n))
                for problem in problems:
                    record = done.get((run.label, problem.id))
                    if record is None:
                        record = _record(run, problem, solver.solve(problem.question, id=problem.id), settings)
                        writer.write(record)
                        print(f"{run.label} {problem.id}: {record['answer']} "
                              f"({'right' if record['correct'] else 'wrong'}, {record['work']['seconds']:.1f} s)",
                              file=sys.stderr)
                    records.append(record)
        finally:
            base.close()
    return records


def _record(run: Run, problem: Problem, result: Any, settings: dict[str, Any]) -> dict[str, Any]:
    correct = result.answer is not None and answer_key(result.answer) == answer_key(problem.answer)
    return {"run": run.label, "id": problem.id, "answer": result.answer, "correct": correct,
            "outcome": result.outcome, "work": result.to_dict()["work"], "settings": settings}


def _done_records(path: Path, settings: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    if not path.exists():
        return {}
    done = {}
    for number, record in read_jsonl(path, skip_torn_end=True):
        if record.get("settings") != settings:
            raise InputError(f"{path} line {number}: solved with other settings; use another --out, or the same "
                             "settings to resume")
        done[(record["run"], record["id"])] = record
    return done


def paired_bootstrap(a: Sequence[bool], b: Sequence[bool], *, draws: int = DRAWS, seed: int = 0
                     ) -> tuple[float, float, float]:
    """Accuracy of `a` less that of `b` (points) and its 95% interval, resampling the problems (paired)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(first), size=(draws, len(first)))
    differences = 100 * (first[picks].mean(axis=1) - second[picks].mean(axis=1))
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(100 * (first.mean() - second.mean())), float(low), float(high)


def summarize(records: list[dict[str, Any]], plan: list[Run], problems: list[Problem]) -> dict[str, Any]:
    by_run = {run.label: {r["id"]: r for r in records if r["run"] == run.label} for run in plan}
    rows = {}
    for run in plan:
        picked = [by_run[run.label][p.id] for p in problems]
        rows[run.label] = {
            "strategy": run.strategy, "n": run.n, "accuracy": 100 * float(np.mean([r["correct"] for r in picked])),
            "answered": sum(r["answer"] is not None for r in picked),
            **{f"mean_{key}": float(np.mean([r["work"][key] for r in picked]))
               for key in ("policy_tokens", "critiques", "seconds")}}
    comparisons = {}
    for run in plan:
        if run.strategy != "guided":
            continue
        for other in (f"majority@{run.n}", "greedy"):
            if other in by_run:
                a = [by_run[run.label][p.id]["correct"] for p in problems]
                b = [by_run[other][p.id]["correct"] for p in problems]
                difference, low, high = paired_bootstrap(a, b)
                comparisons[f"{run.label} - {other}"] = {"points": difference, "low": low, "high": high}
    return {"runs": rows, "comparisons": comparisons}


def markdown(report: dict[str, Any]) -> str:
    rows = [(label, f"{r['accuracy']:.1f}", r["answered"], f"{r['mean_policy_tokens']:.0f}",
             f"{r['mean_critiques']:.0f}", f"{r['mean_seconds']:.1f}")
            for label, r in report["summary"]["runs"].items()]
    pairs = [(name, f"{c['points']:+.1f}", f"{c['low']:+.1f} to {c['high']:+.1f}")
             for name, c in report["summary"]["comparisons"].items()]
    title = (f"Guided search on {report['data']}: first {report['problems']} problems; policy {report['policy']}, "
             f"judge {report['judge']}; peak memory {report['peak_rss_mib']:.0f} MiB")
    text = title + "\n\n" + table(("run", "accuracy %", "answered", "policy tokens", "critiques", "seconds"), rows,
                                  "lrrrrr")
    if pairs:
        text += "\n\n" + table(("paired difference", "points", f"95% bootstrap ({DRAWS} draws)"), pairs, "lrr")
    return text + "\n"


def plot(report: dict[str, Any], path: Path) -> bool:
    """Accuracy against mean seconds per problem, one labelled point per run; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, row in report["summary"]["runs"].items():
        axes.scatter(row["mean_seconds"], row["accuracy"])
        axes.annotate(label, (row["mean_seconds"], row["accuracy"]), textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("seconds per problem")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"first {report['problems']} problems of {Path(report['data']).name}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    from rprm_lite.cli import run_program

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a ProcessBench-format JSON list of problems")
    parser.add_argument("--limit", type=int, default=100, help="the first M problems")
    parser.add_argument("--ns", default="4,8", help="comma-separated N (candidates)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated strategies")
    parser.add_argument("--policy", type=Path, default=None, help="policy GGUF (default: the demo's)")
    parser.add_argument("--policy-lora", action="append", default=[], help="adapter on the policy")
    parser.add_argument("--model", type=Path, default=None, help="judge GGUF (default: $RPRM_MODEL, else the demo)")
    parser.add_argument("--k", type=int, default=None, help="the judge's critiques per step (default: the model's)")
    parser.add_argument("--max-tokens", type=int, default=None, help="max tokens per critique")
    parser.add_argument("--max-steps", type=int, default=SolveConfig().max_steps)
    parser.add_argument("--step-tokens", type=int, default=SolveConfig().step_tokens)
    parser.add_argument("--no-good-step", choices=("stop", "keep"), default=SolveConfig().no_good_step,
                        help="guided, at a step whose candidates the judge all finds wrong: stop, or keep the best "
                        "(R-PRM's search)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return run_program(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise InputError(f"--strategies: expected some of {', '.join(STRATEGIES)}, got {', '.join(unknown)}")
    try:
        ns = [int(n) for n in args.ns.split(",")]
    except ValueError:
        raise InputError(f"--ns: expected comma-separated integers, got {args.ns!r}") from None
    config = SolveConfig(max_steps=args.max_steps, step_tokens=args.step_tokens, n=max(ns),
                         no_good_step=args.no_good_step)
    judge = {k: v for k, v in (("k", args.k), ("max_tokens", args.max_tokens)) if v is not None}
    problems = read_problems(args.data, args.limit)
    plan = runs(ns, strategies)
    settings = {"data": str(args.data), "config": config.to_dict(), "policy": str(args.policy),
                "policy_lora": args.policy_lora, "judge": str(args.model), "judge_options": judge}
    solver_args = {"policy": args.policy, "judge": args.model, "policy_lora": args.policy_lora, "config": config,
                   "threads": args.threads, "judge_options": {**judge, "prefix_cache": "memory"}}
    args.out.mkdir(parents=True, exist_ok=True)
    records = solve_all(problems, plan, solver_args, args.out, settings)
    report = {"data": str(args.data), "problems": len(problems), "policy": str(args.policy or "the demo policy"),
              "judge": str(args.model or "the demo judge"), "judge_options": judge, "config": config.to_dict(),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "summary": summarize(records, plan, problems)}
    write_report(args.out, "search", report, markdown(report))
    if plot(report, args.out / "search.png"):
        print(f"plot: {args.out / 'search.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
