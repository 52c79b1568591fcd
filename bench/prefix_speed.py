"""Time to the first verdict with the prompt prefix decoded once: prefix reuse off, in memory, from disk.

    python -m rprm_lite.bench.prefix_speed [--model PATH | --shape qwen2.5-0.5b --quant Q8_0] [--k 10]
        [--tokens 16] [--adaptive] [--questions 10] [--per-question 2] [--threads 2] [--serve | --serve-only]
        [--out bench/results]

A batch of `questions` x `per_question` solutions (3 steps each, the solutions of a question one after the
other, every step scored) is scored three ways, by a fresh Scorer each, one after the other in one process:
  off     every prompt decoded from its first token (`Scorer(prefix_cache=False)`);
  memory  the template's and each question's KV state kept in memory (the template's also written to a
          folder): the first solution decodes the template, the others put it back;
  disk    a fresh Scorer whose memory is empty reads the template's state from that folder.
Critiques have exactly `tokens` tokens (end-of-text banned). For each way: the first step's latency (from the
call to the step-1 verdict) of the first solution and the mean over the others, the same for the step-1
prompt alone (from the call to the first critique's sampler, made once the prompt is decoded: the time to
the first critique token), the whole batch's time, and the prompt tokens decoded; the results must be
identical, line for line (but for `prefix_tokens`, which says the prefix cache worked), or the run fails.
Without --model it runs on a random-weight model of `--shape` in
`--quant` (logits scaled by --logit-scale, so sampling costs what it does with a trained model), built as
score_speed builds it. `--serve` also scores the batch through `rprm-lite serve` (NDJSON streaming, the step-1
event timed by the client) the same three ways, by a fresh server each: `--prefix-cache off`; `--cache` on a
new folder (its first request decodes the template and writes its state there); `--cache` on a folder holding
only those states. `--serve-only` measures through the server alone (a run in two pieces, each with its own
`off`). Prints a markdown table and writes prefix_speed.json and prefix_speed.md (never a test).
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.markdown import table
from rprm_lite.solution import Solution

WAYS = ("off", "memory", "disk")
# Qwen2.5-7B's sizes (its config.json): the projection's shape, never built here
SHAPE_7B = dict(n_layer=28, hidden=3584, n_head=28, n_kv_head=4, ffn=18944)


def batch(questions: int, per_question: int) -> list[Solution]:
    """`per_question` 3-step solutions of each of `questions` word problems, a question's solutions together."""
    solutions = []
    for q in range(questions):
        pens, price = q + 2, 3 + q % 4
        question = (f"A shop sells {pens} pens for {pens * price} dollars, and a notebook costs {price + 1} dollars "
                    f"more than a pen. How much do {q + 3} notebooks cost?")
        for s in range(per_question):
            note = price + 1 + s  # the second solution gets the notebook's price wrong (and no step is the same)
            solutions.append(Solution.create(question, [
                f"{('One pen', 'Each pen')[s % 2]} costs {pens * price} / {pens} = {price} dollars.",
                f"A notebook costs {price} + 1 = {note} dollars.",
                f"{q + 3} notebooks cost {q + 3} * {note} = {(q + 3) * note} dollars."], id=f"q{q}-s{s}"))
    return solutions


def score_batch(scorer, solutions: list[Solution]) -> dict[str, Any]:
    """Score `solutions` in order; each one's step-1 latency and step-1 prompt time, the batch's seconds and the
    JSON result lines."""
    from rprm_lite.output import to_json_line

    first_steps, prompts, lines, samplers = [], [], [], []
    make_sampler = scorer.make_sampler  # made once a step's prompt is decoded, just before its first token
    scorer.make_sampler = lambda *args, **kwargs: samplers.append(time.perf_counter()) or make_sampler(*args, **kwargs)
    start = time.perf_counter()
    for solution in solutions:
        began, seen = time.perf_counter(), []
        del samplers[:]
        result = scorer.score_solution(solution, on_step=lambda *_, seen=seen: seen.append(time.perf_counter()))
        first_steps.append(seen[0] - began)
        prompts.append(samplers[0] - began)
        lines.append(to_json_line(result, critiques=True))
    seconds = time.perf_counter() - start
    steps = [step for line in lines for step in _steps(line)]
    restored = sum(getattr(step, "prefix_tokens", 0) for step in steps)
    decoded = sum(step.prompt_tokens - step.reused_tokens for step in steps) - restored
    return {**latencies(first_steps, seconds, lines), **latencies(prompts, prefix="prompt"),
            "prompt_tokens_decoded": decoded, "prompt_tokens_restored": restored,
            "generated_tokens": sum(step.generated_tokens for line in lines for step in _steps(line))}


def latencies(seconds: list[float], batch_s: float | None = None, lines: list[str] | None = None, *,
              prefix: str = "first_step") -> dict[str, Any]:
    """Each solution's step-1 `seconds`, the first solution's and the mean of the later ones (and the batch's
    seconds and result lines when given)."""
    report = {f"{prefix}_s": seconds, f"first_solution_{prefix}_s": seconds[0],
              f"later_{prefix}_s": sum(seconds[1:]) / max(1, len(seconds) - 1)}
    return report if lines is None else {**report, "batch_s": batch_s, "lines": lines}


def _steps(line: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(**step) for step in json.loads(line)["steps"] if step.get("score") is not None]


def make_scorer(model: Path, settings: dict[str, Any], prefix_cache):
    """A Scorer without a step cache (whole steps would be reused), critiques of a fixed length."""
    from rprm_lite.engine import Sampler
    from rprm_lite.scoring import Scorer
    from rprm_lite.step_cache import StepCache

    scorer = Scorer(model, cache=StepCache(max_entries=0), prefix_cache=prefix_cache, **settings)
    scorer.make_sampler = functools.partial(Sampler, n_vocab=scorer.engine.n_vocab, banned=scorer.engine.end_tokens())
    return scorer


def warm_up(scorer, solutions: list[Solution]) -> None:
    """Size the context for the longest solution and touch the weights, so no way pays for that."""
    from rprm_lite.engine import DecodeEntry
    from rprm_lite.prompt import render

    last = [scorer.engine.tokenize_prompt(render(s, len(s.steps) - 1, scorer.config.prompt_style)) for s in solutions]
    scorer._fit_context([max(last, key=len)])  # the size score() asks for, so it keeps this context (speed_jobs too)
    list(scorer.engine.decode([DecodeEntry(t, i, 0, logits=True) for i, t in enumerate(range(8))]))
    scorer.engine.clear()


def measure(model: Path, settings: dict[str, Any], solutions: list[Solution]) -> dict[str, Any]:
    """The batch scored each way (off, memory, disk), by a fresh Scorer each, one after the other."""
    from rprm_lite.prefix_cache import PrefixCache

    runs = {}
    with tempfile.TemporaryDirectory(prefix="prefix-speed-") as folder:
        for way in WAYS:
            cache = None if way == "off" else PrefixCache(folder)  # memory writes the folder disk then reads
            with make_scorer(model, settings, cache if cache is not None else False) as scorer:
                warm_up(scorer, solutions)
                runs[way] = score_batch(scorer, solutions)
                if cache is not None:
                    runs[way]["cache"] = {"hits": cache.hits, "disk_hits": cache.disk_hits, "corrupt": cache.corrupt}
    return same_results(runs)


def same_results(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each run's result lines against the run with the prefix cache off: `identical` when they are the same but
    for `prefix_tokens`, the field that says how many tokens the prefix cache put back."""
    expected = [_results(line) for line in runs["off"]["lines"]]
    for run in runs.values():
        run["identical"] = [_results(line) for line in run.pop("lines")] == expected
    return runs


def _results(line: str) -> Any:
    """A result line (or the server's event holding one) without its steps' `prefix_tokens`."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key != "prefix_tokens"}
        return [strip(item) for item in value] if isinstance(value, list) else value
    return strip(json.loads(line))


def prefill_rate(model: Path, threads: int, solution: Solution) -> float:
    """Tokens per second decoding the first prompt of `solution` from an empty cache (the prefill rate)."""
    from rprm_lite.engine import DecodeEntry, Engine
    from rprm_lite.prompt import render

    engine = Engine(model, threads=threads)
    try:
        tokens = engine.tokenize_prompt(render(solution, 0))
        engine.ensure_context(len(tokens) + 8, 1)
        entries = [DecodeEntry(t, i, 0, logits=i == len(tokens) - 1) for i, t in enumerate(tokens)]
        list(engine.decode(entries[:8]))  # touch the weights
        engine.clear()
        start = time.perf_counter()
        list(engine.decode(entries))
        return len(tokens) / (time.perf_counter() - start)
    finally:
        engine.close()


def matmul_params(shape: dict[str, int]) -> int:
    """Weights a prompt token is multiplied by (the layers; the output head runs for the last token only)."""
    head_dim = shape["hidden"] // shape["n_head"]
    attention = 2 * shape["hidden"] ** 2 + 2 * shape["hidden"] * shape["n_kv_head"] * head_dim
    return shape["n_layer"] * (attention + 3 * shape["hidden"] * shape["ffn"])


def measure_serve(model: Path, settings: dict[str, Any], solutions: list[Solution]) -> dict[str, Any]:
    """The batch through `rprm-lite serve`, streamed, by a fresh server each way: --prefix-cache off; --cache on a
    new folder (its first request decodes the template); --cache on a folder holding only the second one's
    prefix states (from disk)."""
    import shutil

    runs = {}
    with tempfile.TemporaryDirectory(prefix="prefix-speed-serve-") as folder:
        first, second = Path(folder) / "first", Path(folder) / "second"
        runs["off"] = serve_batch(model, settings, solutions, ["--prefix-cache", "off"])
        runs["memory"] = serve_batch(model, settings, solutions, ["--cache", str(first)])
        shutil.copytree(first / "kv", second / "kv")  # no step results: the third server scores every step
        runs["disk"] = serve_batch(model, settings, solutions, ["--cache", str(second)])
    return same_results(runs)


def serve_batch(model: Path, settings: dict[str, Any], solutions: list[Solution], extra: list[str]) -> dict[str, Any]:
    from rprm_lite.bench.serve_speed import ServerProcess

    options = [f"--{name.replace('_', '-')}" + ("" if value is True else f"={value}")
               for name, value in settings.items() if value is not False]
    server = ServerProcess(model, [*options, *extra])
    try:
        first_steps, lines = [], []
        start = time.perf_counter()
        for solution in solutions:
            began = time.perf_counter()
            body, stamps = server.post({"question": solution.question, "steps": list(solution.steps),
                                        "id": solution.id, "stream": True})
            first_steps.append(stamps[0] - began)
            lines.append(body.decode().splitlines()[-1])
        seconds = time.perf_counter() - start
    finally:
        server.stop()
    return latencies(first_steps, seconds, lines)


def report_table(report: dict[str, Any]) -> str:
    rows = []
    for label, runs in report["runs"].items():
        off = runs["off"]
        for way, run in runs.items():
            prompt = (f"{run['later_prompt_s']:.2f}", f"{off['later_prompt_s'] / run['later_prompt_s']:.2f}x"
                      ) if "later_prompt_s" in run else ("-", "-")
            rows.append((label, way, f"{run['first_solution_first_step_s']:.2f}", f"{run['later_first_step_s']:.2f}",
                         f"{off['later_first_step_s'] / run['later_first_step_s']:.2f}x", *prompt,
                         f"{run['batch_s']:.1f}", f"{off['batch_s'] / run['batch_s']:.2f}x",
                         run.get("prompt_tokens_decoded", "-"), "yes" if run["identical"] else "NO"))
    setup = report["setup"]
    lines = [table(("model, K", "prefix reuse", "1st solution: step 1 s", "later solutions: step 1 s", "vs off",
                    "later: step 1 prompt s", "vs off", "batch s", "vs off", "prompt tokens decoded", "identical"),
                   rows, align="llrrrrrrrrl"), "",
             f"{setup['questions']} questions x {setup['per_question']} solutions of 3 steps, every step scored; "
             f"critiques of {setup['tokens']} tokens; {setup['threads']} thread(s); one run each way, in this order. "
             "'step 1 prompt' is the time from the call to the first critique's sampler (the step-1 prompt decoded)."]
    if setup["serve"] or setup["serve_only"]:
        lines += ["Through serve, a fresh server each way (off: --prefix-cache off; memory: --cache on a new folder; "
                  "disk: --cache on a folder holding only the memory server's prefix states), its step 1 timed by "
                  "the client at the streamed step-1 event."]
    if "projection_7b" in report:
        p = report["projection_7b"]
        lines += ["", f"Projection (not measured) for the 7B shape: prefill {p['measured_prefill_tok_s']:.0f} tok/s "
                  f"measured on {p['measured_on']} x {p['param_ratio']:.3f} (its matmul weights / 7B's) = "
                  f"{p['prefill_tok_s']:.1f} tok/s, so the {p['template_tokens']}-token template costs "
                  f"~{p['template_s']:.0f} s per solution without reuse, ~0 s with it."]
    return "\n".join(lines) + "\n"


def projection(model_label: str, rate: float, shape: dict[str, int], template_tokens: int) -> dict[str, Any]:
    ratio = matmul_params(shape) / matmul_params(SHAPE_7B)
    return {"measured_on": model_label, "measured_prefill_tok_s": rate, "param_ratio": ratio,
            "prefill_tok_s": rate * ratio, "template_tokens": template_tokens,
            "template_s": template_tokens / (rate * ratio)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: a random model of --shape)")
    parser.add_argument("--shape", default="qwen2.5-0.5b", help="the random model's shape (bench/shapes.py)")
    parser.add_argument("--quant", default="Q8_0", help="the random model's format")
    parser.add_argument("--logit-scale", type=float, default=4.0, help="the random model's logits times this")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=16, help="tokens per critique (end-of-text banned)")
    parser.add_argument("--adaptive", action="store_true", help="adaptive K (the default rule) instead of K")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--per-question", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help="also through rprm-lite serve")
    parser.add_argument("--serve-only", action="store_true", help="through rprm-lite serve only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    model = args.model or _random_model(args)
    label = f"{model.name}, {'adaptive ' if args.adaptive else ''}K={args.k}"
    settings = {"k": args.k, "max_tokens": args.tokens, "threads": args.threads, "all_steps": True, "seed": 0,
                "adaptive": args.adaptive}
    solutions = batch(args.questions, args.per_question)
    report: dict[str, Any] = {"benchmark": "prefix_speed", "setup": {**settings, **vars(args), "model": str(model),
                                                                      "out": str(args.out)}, "runs": {}}
    if not args.serve_only:
        report["runs"][label] = measure(model, settings, solutions)
    if args.serve or args.serve_only:
        report["runs"][f"{label}, serve"] = measure_serve(model, settings, solutions)
    if args.model is None:
        from rprm_lite.bench.shapes import SHAPES

        report["projection_7b"] = projection(model.name, prefill_rate(model, args.threads, solutions[0]),
                                             SHAPES[args.shape], _template_tokens(model))
    write_report(args.out, "prefix_speed", report, report_table(report))
    return 0 if all(run.get("identical", True) for runs in report["runs"].values() for run in runs.values()) else 1


def _random_model(args) -> Path:
    from rprm_lite.bench.speed_models import build_model

    return build_model(args.shape, args.quant, args.out / "models", logit_scale=args.logit_scale)


def _template_tokens(model: Path) -> int:
    from rprm_lite.engine import Engine
    from rprm_lite.prompt import head_part

    engine = Engine(model, vocab_only=True)
    try:
        return len(engine.tokenize_prompt(head_part("r-prm-eval")))
    finally:
        engine.close()


if __name__ == "__main__":
    raise SystemExit(main())
