"""A guided search's step on the judge: N candidate next steps scored as one N x K batch against one at a time.

    python -m rprm_lite.bench.candidates_speed [--solution examples/solution.json] [--steps 2] [--n 4] [--k 1]
        [--candidate TEXT ...] [--model JUDGE.gguf] [--max-tokens N] [--policy POLICY.gguf] [--threads 1]
        [--out bench/results]

The demo policy (or `--policy`) proposes `--n` next steps after the first `--steps` steps of the solution, as
`rprm-lite solve --strategy guided` does (or they are given, `--candidate` each); the judge (default: the demo
judge, at its defaults but `--k` and `--max-tokens`) then scores the distinct ones three ways, in one process,
beside whatever else the machine runs:
- `alone`: as guided search did before the batch: `score_solution` of each candidate solution, every step (the
  earlier steps from the step cache, scored once before the timing; their prompts decoded again);
- `one at a time`: `score_candidates` with one candidate per call (its K critiques as K sequences);
- `together`: `score_candidates` with all of them (N x K sequences in one lock-step batch).
Reported per way: seconds, critique tokens, critique tokens per second, the decode calls, and whether each
candidate's critiques are those of `alone` (and the largest P(Yes) difference). Writes candidates_speed.json and
candidates_speed.md (never a test).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rprm_lite.bench.markdown import table
from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.solution import Solution, read_solutions

WAYS = ("alone", "one at a time", "together")


def candidates(policy_path: Path | None, solution: Solution, steps: int, n: int, threads: int) -> list[str]:
    """The policy's distinct non-empty next steps after the solution's first `steps` steps (guided's seeds)."""
    from rprm_lite.policy_engine import PolicyModel, resolve_policy
    from rprm_lite.seeds import LLAMA_SEED_MASK, derive_seed
    from rprm_lite.solve import SolveConfig

    config = SolveConfig()
    path, adapters, _ = resolve_policy(policy_path)
    policy = PolicyModel(path, lora=adapters, threads=threads)
    try:
        seeds = [derive_seed(f"solve:{config.policy_seed}:{solution.question}:{steps + 1}:{i}", LLAMA_SEED_MASK)
                 for i in range(n)]
        drafts = policy.sample(policy.tokens(solution.question, solution.steps[:steps]), seeds=seeds,
                               temperature=config.policy_temperature, top_p=config.policy_top_p,
                               max_tokens=config.step_tokens, one_step=True)
    finally:
        policy.close()
    return list(dict.fromkeys(draft.text for draft in drafts if draft.text))


def measure(model: Path | None, settings: dict[str, Any], solution: Solution, steps: int,
            texts: list[str]) -> dict[str, Any]:
    """Each way's seconds, critique tokens, decode calls and step results."""
    from rprm_lite.scoring import Scorer

    so_far = list(solution.steps[:steps])
    with Scorer(model, prefix_cache="memory", all_steps=True, **settings) as scorer:
        if so_far:
            scorer.score(solution.question, so_far)  # the earlier steps in the step cache, as a search has them
        calls = [0]
        decode = scorer.engine.decode

        def counting(entries: Any) -> Any:
            calls[0] += 1
            return decode(entries)

        scorer.engine.decode = counting  # type: ignore[method-assign]
        ways = {"alone": lambda: [scorer.score(solution.question, [*so_far, t]).steps[-1] for t in texts],
                "one at a time": lambda: [scorer.score_candidates(solution.question, so_far, [t])[0] for t in texts],
                "together": lambda: scorer.score_candidates(solution.question, so_far, texts)}
        runs: dict[str, Any] = {}
        for way in WAYS:
            calls[0] = 0
            start = time.perf_counter()
            results = ways[way]()
            seconds = time.perf_counter() - start
            tokens = sum(step.generated_tokens for step in results)
            runs[way] = {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
                         "decode_calls": calls[0], "steps": [step.to_dict() for step in results]}
            print(f"{way}: {seconds:.1f} s, {tokens} critique tokens", file=sys.stderr)
        config = scorer.config
    base = runs["alone"]["steps"]
    for run in runs.values():
        run["critiques_identical"] = sum(a["critiques"] == b["critiques"] for a, b in zip(base, run["steps"],
                                                                                           strict=True))
        run["max_p_yes_difference"] = max(abs(p - q) for a, b in zip(base, run["steps"], strict=True)
                                          for p, q in zip(a["p_yes"], b["p_yes"], strict=True))
    return {"config": {"k": config.k, "temperature": config.temperature, "max_tokens": config.max_tokens,
                       "threads": config.threads}, "candidates": texts, "runs": runs}


def report_table(report: dict[str, Any]) -> str:
    runs = report["measured"]["runs"]
    one = runs["one at a time"]["tokens_per_s"]
    rows = [(way, f"{run['seconds']:.2f}", run["tokens"], f"{run['tokens_per_s']:.1f}",
             f"{run['tokens_per_s'] / one:.2f}x", run["decode_calls"],
             f"{run['critiques_identical']}/{len(run['steps'])}", f"{run['max_p_yes_difference']:.1e}")
            for way, run in runs.items()]
    setup, config = report["setup"], report["measured"]["config"]
    return "\n".join([
        table(("way", "seconds", "critique tokens", "tokens/s", "vs one at a time", "decode calls",
               "critiques as alone", "max dP(Yes)"), rows, align="lrrrrrrr"), "",
        f"{len(report['measured']['candidates'])} distinct candidates after step {setup['steps']} of "
        f"{setup['solution']}; the judge at K={config['k']}, temperature {config['temperature']}, "
        f"max {config['max_tokens']} tokens, {setup['threads']} thread(s); one process, one pass each."]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solution", type=Path, default=Path("examples/solution.json"))
    parser.add_argument("--steps", type=int, default=2, help="the solution's steps before the candidates")
    parser.add_argument("--n", type=int, default=4, help="next steps the policy proposes")
    parser.add_argument("--k", type=int, default=1, help="the judge's critiques per candidate")
    parser.add_argument("--model", type=Path, help="the judge GGUF (default: the demo judge)")
    parser.add_argument("--policy", type=Path, help="the policy GGUF (default: the demo policy)")
    parser.add_argument("--candidate", action="append", default=[],
                        help="a next step to score (repeated: the candidates; without it the policy proposes them)")
    parser.add_argument("--max-tokens", type=int, help="the judge's tokens per critique (default: the model's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    solution = read_solutions(str(args.solution))[0]
    texts = args.candidate or candidates(args.policy, solution, args.steps, args.n, args.threads)
    print(f"{len(texts)} distinct candidates: {texts}", file=sys.stderr)
    settings = {"k": args.k, "threads": args.threads, **({"max_tokens": args.max_tokens} if args.max_tokens else {})}
    measured = measure(args.model, settings, solution, args.steps, texts)
    setup = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"benchmark": "candidates_speed", "setup": setup, "measured": measured}
    write_report(args.out, "candidates_speed", report, report_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
