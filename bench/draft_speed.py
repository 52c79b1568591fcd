"""Critique decoding with prompt-lookup drafts (`--draft`) against without: tokens per second, seconds per step.

    python -m rprm_lite.bench.draft_speed [--model PATH] [--k 1 10] [--draft auto] [--max-tokens N]
        [--examples examples/solutions.jsonl] [--synthetic build/fresh40404/test/gsm8k.json] [--first 20]
        [--threads 2] [--out bench/results]

For each K, two Scorers of the same model (default: the demo judge) score the same solutions, every step: one with
`--draft off`, one with `--draft` (auto), one solution at a time, in turns (the first of each pair alternates), so
that both see the same load on the machine. Each keeps the prefix cache in memory and no step results. K takes the
model file's defaults (the demo judge: greedy at K=1; sampled at 0.95 for K > 1). Reported per K: critique tokens
per second, seconds per scored step, the drafts' acceptance rate and critique tokens per stream and decode call,
the speed-up, and whether the critiques (and the whole result lines) are identical; with sampled critiques a
batch's logits may differ from one token's in the last bits (see docs), so they may not be. Prints a markdown table
and writes draft_speed.json and draft_speed.md (never a test).
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

WAYS = ("off", "on")


def solutions(examples: Path | None, synthetic: Path | None, first: int) -> list[Solution]:
    """The examples' solutions, then the first `first` of the synthetic split."""
    found = read_solutions(str(examples)) if examples else []
    return found + (read_solutions(str(synthetic))[:first] if synthetic else [])


def make_scorer(model: Path | None, settings: dict[str, Any]):
    """A Scorer without a step cache (whole steps would be reused), the prefix cache in memory."""
    from rprm_lite.scoring import Scorer
    from rprm_lite.step_cache import StepCache

    return Scorer(model, cache=StepCache(max_entries=0), prefix_cache="memory", **settings)


def measure(model: Path | None, settings: dict[str, Any], draft: str, batch: list[Solution]) -> dict[str, Any]:
    """Each solution scored by both scorers in turn; per way its seconds, tokens, steps and result lines."""
    from rprm_lite.output import to_json_line

    runs = {way: {"seconds": 0.0, "tokens": 0, "steps": 0, "lines": []} for way in WAYS}
    off, on = make_scorer(model, {**settings, "draft": "off"}), make_scorer(model, {**settings, "draft": draft})
    with off, on:
        scorers = {"off": off, "on": on}
        for index, solution in enumerate(batch):
            for way in WAYS if index % 2 == 0 else reversed(WAYS):
                start = time.perf_counter()
                result = scorers[way].score_solution(solution)
                run = runs[way]
                run["seconds"] += time.perf_counter() - start
                scored = [step for step in result.steps if step.score is not None]
                run["tokens"] += sum(step.generated_tokens for step in scored)
                run["steps"] += len(scored)
                run["lines"].append(to_json_line(result, critiques=True))
        for way, scorer in scorers.items():
            runs[way]["drafts"] = vars(scorer.draft_stats).copy()
        config = on.config
    return {"config": {"k": config.k, "temperature": config.temperature, "max_tokens": config.max_tokens,
                       "calculator": config.calculator, "draft": draft}, **compare(runs)}


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rates per way, and how the results of drafts on differ from off's."""
    off = [json.loads(line) for line in runs["off"].pop("lines")]
    on = [json.loads(line) for line in runs["on"].pop("lines")]
    steps = [(a, b) for x, y in zip(off, on, strict=True) for a, b in zip(x["steps"], y["steps"], strict=True)]
    for run in runs.values():
        run["tokens_per_s"] = run["tokens"] / run["seconds"]
        run["seconds_per_step"] = run["seconds"] / max(1, run["steps"])
    drafts = runs["on"]["drafts"]
    differences = [abs(p - q) for a, b in steps for p, q in zip(a["p_yes"], b["p_yes"], strict=False)]
    return {"runs": runs, "speedup": runs["on"]["tokens_per_s"] / runs["off"]["tokens_per_s"],
            "acceptance": drafts["accepted"] / max(1, drafts["drafted"]),
            "tokens_per_advance": drafts["tokens"] / max(1, drafts["advances"]),
            "critiques_identical": sum(a.get("critiques") == b.get("critiques") for a, b in steps),
            "steps_compared": len(steps), "results_identical": off == on,
            "max_p_yes_difference": max(differences, default=0.0)}


def report_table(report: dict[str, Any]) -> str:
    rows = []
    for label, measured in report["runs"].items():
        for way, run in measured["runs"].items():
            on = way == "on"
            rows.append((label, measured["config"]["draft"] if on else "off", run["steps"], run["tokens"],
                         f"{run['tokens_per_s']:.1f}", f"{run['seconds_per_step']:.2f}",
                         f"{measured['speedup']:.2f}x" if on else "", f"{100 * measured['acceptance']:.0f}%" if on
                         else "", f"{measured['tokens_per_advance']:.2f}" if on else "",
                         f"{measured['critiques_identical']}/{measured['steps_compared']}" if on else "",
                         f"{measured['max_p_yes_difference']:.1e}" if on else ""))
    setup = report["setup"]
    return "\n".join([
        table(("model, K", "draft", "steps", "critique tokens", "tokens/s", "s/step", "speed-up", "accepted",
               "tokens per stream-call", "critiques identical", "max dP(Yes)"), rows, align="llrrrrrrrrr"), "",
        f"{setup['solutions']} solutions ({setup['sources']}), every step scored; {setup['threads']} thread(s); "
        "drafts off and on scored each solution in turn, in one process."]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the demo judge)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10], help="critiques per step, one run each")
    parser.add_argument("--draft", default="auto", help="the --draft value compared with off")
    parser.add_argument("--max-tokens", type=int, help="tokens per critique at most (default: the model's)")
    parser.add_argument("--examples", type=Path, default=Path("examples/solutions.jsonl"))
    parser.add_argument("--synthetic", type=Path, default=Path("build/fresh40404/test/gsm8k.json"),
                        help="a synthetic split (python -m rprm_lite.demo_model.synthetic)")
    parser.add_argument("--first", type=int, default=20, help="solutions of the synthetic split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    synthetic = args.synthetic if args.synthetic.exists() and args.first else None
    batch = solutions(args.examples, synthetic, args.first)
    report: dict[str, Any] = {"benchmark": "draft_speed", "setup": {
        **{key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "solutions": len(batch), "sources": " + ".join(str(p) for p in (args.examples, synthetic) if p)}, "runs": {}}
    for k in args.k:
        settings = {"k": k, "threads": args.threads, "all_steps": True,
                    **({"max_tokens": args.max_tokens} if args.max_tokens else {})}
        label = f"{args.model.name if args.model else 'demo judge'}, K={k}"
        report["runs"][label] = measure(args.model, settings, args.draft, batch)
    write_report(args.out, "draft_speed", report, report_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
