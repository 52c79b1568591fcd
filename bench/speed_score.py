"""Scoring speed: rprm-lite against a high-level `Llama` loop and a bare llama.cpp decode loop.

    python -m rprm_lite.bench.speed_score [--shape qwen2.5-0.5b] [--quant Q8_0] [--k 10] [--tokens 64]

Each variant scores the same fixed 4-step solution with K critiques per step of a fixed length
(end-of-text is banned, so every critique runs to the token budget and takes the fallback question),
in its own process so that peak RSS is its own:
  (a) rprm-lite: the Scorer (K streams in one batch per token, KV reuse across steps);
  (b) llama-cpp-python's high-level `Llama`: K completions one after another, then P(Yes) by
      evaluating the fallback question after each, as a user without rprm-lite would write it;
  (c) the engine ceiling: a bare loop of llama_decode over the same batches with llama.cpp's C
      samplers and no per-token Python work beyond filling the batch.
Prints a markdown table and writes JSON (ratios measured in one run; never a test).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "qwen2.5-0.5b": dict(n_layer=24, hidden=896, n_head=14, n_kv_head=2, ffn=4864),
    "tiny": dict(n_layer=2, hidden=64, n_head=4, n_kv_head=2, ffn=128),
}
QUESTION = ("A baker makes 24 muffins. She sells 15 of them and then bakes 8 more. "
            "How many muffins does she have now?")
STEPS = ["The baker starts with 24 muffins.", "After selling 15 muffins she has 24 - 15 = 9 muffins.",
         "After baking 8 more she has 9 + 8 = 17 muffins.", "The answer is 17."]
DEFAULT_OUT = Path("bench/results")


def build_model(shape: str, quant: str | None, folder: Path) -> Path:
    from rprm_lite.convert.random_model import build_random_gguf

    path = folder / f"random-{shape}-{quant or 'F32'}.gguf"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        build_random_gguf(path, tokenizer="qwen2", quant=quant, seed=0, **SHAPES[shape])
    return path


def prompts_and_engine(model: Path, threads: int):
    from rprm_lite.engine import Engine
    from rprm_lite.prompt import render
    from rprm_lite.solution import Solution

    engine = Engine(model, threads=threads)
    solution = Solution.create(QUESTION, STEPS)
    return engine, [engine.tokenize_prompt(render(solution, i)) for i in range(len(STEPS))]


def run_rprm_lite(model: Path, k: int, tokens: int, threads: int) -> dict:
    import functools

    from rprm_lite.config import ScoreConfig
    from rprm_lite.engine import Sampler
    from rprm_lite.scoring import Scorer

    scorer = Scorer(model, ScoreConfig(k=k, max_tokens=tokens, all_steps=True, threads=threads))
    scorer.make_sampler = functools.partial(Sampler, n_vocab=scorer.engine.n_vocab,
                                            banned=scorer.engine.end_tokens())
    scorer.score("warm-up?", ["1"])  # the first decode allocates buffers
    seconds: list[float] = []
    start = time.perf_counter()
    result = scorer.score(QUESTION, STEPS, on_step=lambda *_: seconds.append(time.perf_counter()))
    generated = sum(step.generated_tokens for step in result.steps)
    return _report(start, seconds, generated, fallbacks=sum(s.fallbacks for s in result.steps))


def run_high_level(model: Path, k: int, tokens: int, threads: int) -> dict:
    import math

    import llama_cpp
    from llama_cpp import Llama

    from rprm_lite.prompt import FALLBACK_TEXT

    engine, prompts = prompts_and_engine(model, threads)
    yes, no = engine.tokenize(" Yes", special=False)[0], engine.tokenize(" No", special=False)[0]
    fallback = engine.tokenize(FALLBACK_TEXT, special=False)
    engine.close()
    llm = Llama(str(model), n_ctx=max(map(len, prompts)) + tokens + len(fallback) + 16, n_threads=threads,
                n_threads_batch=threads, n_batch=512, verbose=False)
    llm.create_completion(prompts[0][:8], max_tokens=1)  # warm-up
    seconds, generated = [], 0
    start = time.perf_counter()
    for prompt in prompts:
        for i in range(k):
            completion = llm.create_completion(prompt, max_tokens=tokens, temperature=0.95, top_p=0.95, top_k=0,
                                               min_p=0.0, repeat_penalty=1.0, seed=i)
            generated += completion["usage"]["completion_tokens"]
            llm.eval(fallback)
            logits = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)  # the last token's row
            _ = 1.0 / (1.0 + math.exp(float(logits[no]) - float(logits[yes])))
        seconds.append(time.perf_counter())
    return _report(start, seconds, generated, fallbacks=k * len(prompts))


def run_bare(model: Path, k: int, tokens: int, threads: int) -> dict:
    import llama_cpp

    from rprm_lite.engine import DecodeEntry, Sampler, stream_seed
    from rprm_lite.prompt import FALLBACK_TEXT
    from rprm_lite.scoring import common_prefix

    engine, prompts = prompts_and_engine(model, threads)
    fallback = engine.tokenize(FALLBACK_TEXT, special=False)
    engine.ensure_context(max(map(len, prompts)) + k * (tokens + len(fallback) + 1), k + 1)
    ends, ctx, batch = engine.end_tokens(), engine.ctx, engine.batch
    list(engine.decode([DecodeEntry(t, i, 0, logits=True) for i, t in enumerate(prompts[0][:8])]))  # warm-up
    seconds, generated, previous = [], 0, []
    engine.clear()
    start = time.perf_counter()
    for index, prompt in enumerate(prompts):  # the same KV reuse as the scorer: decode only the new suffix
        keep = min(common_prefix(previous, prompt), len(prompt) - 1)
        for seq in range(k + 1):
            engine.trim(seq, keep if seq == 0 else 0)
        last = list(engine.decode([DecodeEntry(t, p, 0, logits=p == len(prompt) - 1)
                                   for p, t in enumerate(prompt) if p >= keep]))[-1][1]
        previous = prompt
        samplers = [Sampler(temperature=0.95, top_p=0.95, seed=stream_seed(0, index, i), n_vocab=engine.n_vocab,
                            banned=ends) for i in range(k)]
        for i in range(k):
            engine.copy(0, i + 1)
        rows = [last] * k
        for offset in range(tokens):
            for i in range(k):
                batch.token[i] = llama_cpp.llama_sampler_sample(samplers[i].chain, ctx, rows[i])
                batch.pos[i] = len(prompt) + offset
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = i + 1
                batch.logits[i] = True
            batch.n_tokens = k
            llama_cpp.llama_decode(ctx, batch)
            rows = list(range(k))
        generated += k * tokens
        entries = [DecodeEntry(t, len(prompt) + tokens + j, i + 1, logits=j == len(fallback) - 1)
                   for i in range(k) for j, t in enumerate(fallback)]
        for _, row in engine.decode(entries):
            llama_cpp.llama_get_logits_ith(ctx, row)
        for sampler in samplers:
            sampler.close()
        seconds.append(time.perf_counter())
    return _report(start, seconds, generated, fallbacks=k * len(prompts))


def _report(start: float, step_ends: list[float], generated: int, *, fallbacks: int) -> dict:
    total = step_ends[-1] - start
    marks = [start, *step_ends]
    return {"seconds": total, "generated_tokens": generated, "tokens_per_s": generated / total,
            "seconds_per_step": [b - a for a, b in zip(marks, marks[1:], strict=False)],
            "mean_seconds_per_step": total / len(step_ends), "fallbacks": fallbacks,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


VARIANTS = {"rprm-lite": run_rprm_lite, "llama-high-level": run_high_level, "bare-decode": run_bare}


def measure(variant: str, model: Path, k: int, tokens: int, threads: int) -> dict:
    command = [sys.executable, "-m", "rprm_lite.bench.speed_score", "--child", variant, "--model", str(model),
               "--k", str(k), "--tokens", str(tokens), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def kv_cache_mb(model: Path, n_cells: int) -> float:
    from rprm_lite.model_file import inspect_model

    info = inspect_model(model)
    shape = next(s for s in SHAPES.values() if s["hidden"] == _hidden(info))
    head_dim = shape["hidden"] // shape["n_head"]
    return n_cells * shape["n_layer"] * 2 * shape["n_kv_head"] * head_dim * 2 / 2**20  # f16 K and V


def _hidden(info) -> int:
    from rprm_lite.model_file import _Header

    return int(_Header(info.path, info.size).fields[f"{info.architecture}.embedding_length"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--quant", default="Q8_0", help="llama.cpp quantization of the random model (or F32)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64, help="fixed critique length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model", type=Path, help="use this GGUF instead of building a random one")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(VARIANTS[args.child](args.model, args.k, args.tokens, args.threads)))
        return
    quant = None if args.quant.upper() == "F32" else args.quant
    model = args.model or build_model(args.shape, quant, args.out / "models")
    results = {name: measure(name, model, args.k, args.tokens, args.threads) for name in VARIANTS}
    a, b, c = results["rprm-lite"], results["llama-high-level"], results["bare-decode"]
    n_cells = 600 + args.k * (args.tokens + 16)
    budget = model.stat().st_size / 2**20 + kv_cache_mb(model, n_cells) + 400
    summary = {
        "model": model.name, "model_mb": model.stat().st_size / 2**20, "k": args.k, "critique_tokens": args.tokens,
        "threads": args.threads, "variants": results,
        "speedup_vs_high_level": a["tokens_per_s"] / b["tokens_per_s"],
        "fraction_of_bare_decode": a["tokens_per_s"] / c["tokens_per_s"],
        "rss_budget_mb": budget, "rss_within_budget": a["peak_rss_mb"] <= budget,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_score.json").write_text(json.dumps(summary, indent=2))
    print(table(summary))


def table(summary: dict) -> str:
    rows = ["| variant | generated tok/s | s/step | peak RSS MB |", "|---|---:|---:|---:|"]
    for name, r in summary["variants"].items():
        rows.append(f"| {name} | {r['tokens_per_s']:.1f} | {r['mean_seconds_per_step']:.2f} | {r['peak_rss_mb']:.0f} |")
    rows += ["", f"model {summary['model']} ({summary['model_mb']:.0f} MB), K={summary['k']}, "
             f"{summary['critique_tokens']} tokens per critique, {summary['threads']} threads",
             f"rprm-lite / high-level Llama: {summary['speedup_vs_high_level']:.2f}x (target >= 1.5x)",
             f"rprm-lite / bare decode loop: {summary['fraction_of_bare_decode']:.3f} (target >= 0.9)",
             f"rprm-lite peak RSS {summary['variants']['rprm-lite']['peak_rss_mb']:.0f} MB, budget "
             f"{summary['rss_budget_mb']:.0f} MB (model + KV cache + 400 MB)"]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
