"""Scoring speed: rprm-lite against a high-level `Llama` loop and a bare llama.cpp decode loop.

    python -m rprm_lite.bench.speed_score [--shape qwen2.5-0.5b] [--quant Q8_0] [--k 10] [--tokens 64]
                                          [--n-gpu-layers N]

Each variant scores the same fixed 4-step solution with K critiques per step of a fixed length
(end-of-text is banned, so every critique runs to the token budget and takes the fallback question),
in its own process so that peak RSS is its own:
  (a) rprm-lite: the Scorer (K streams in one batch per token, KV reuse across steps);
  (b) llama-cpp-python's high-level `Llama`: K completions one after another, then P(Yes) by
      evaluating the fallback question after each, as a user without rprm-lite would write it;
  (c) the engine ceiling: a bare loop of llama_decode over the same batches with llama.cpp's C
      samplers and no per-token Python work beyond filling the batch.
Prints a markdown table and writes JSON (ratios measured in one run; never a test).

This module also holds the pieces the whole speed suite (`python -m rprm_lite.bench.speed`) shares:
the random-weight models, the `Job` a measurement child runs, and the child-process protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .markdown import table
from .shapes import SCORING_SHAPES, SHAPES

# format name -> (converter outtype, llama.cpp quantization); every format comes from one f32 checkpoint
FORMATS = {"F32": ("f32", None), "F16": ("f16", None), "Q8_0": ("f32", "Q8_0"), "Q4_K_M": ("f32", "Q4_K_M")}
QUESTION = ("A baker makes 24 muffins. She sells 15 of them and then bakes 8 more. "
            "How many muffins does she have now?")
STEPS = ("The baker starts with 24 muffins.", "After selling 15 muffins she has 24 - 15 = 9 muffins.",
         "After baking 8 more she has 9 + 8 = 17 muffins.", "The answer is 17.")
DEFAULT_OUT = Path("bench/results")
TEMPERATURE = TOP_P = 0.95  # the released recipe


# -- models ------------------------------------------------------------------------------------
# Raw random weights give nearly flat next-token distributions: at temperature 0.95 the top-p 0.95 nucleus
# holds ~50,000 of Qwen2's 151,936 tokens, which is llama.cpp's slowest top-p path (its adaptive sort tries
# the best 256 tokens first, then sorts them all), ~10 ms per sampled token here. Trained models are peaked
# (a nucleus of a few tokens: ~1.7 ms). `logit_scale` multiplies the final norm weight, i.e. every logit,
# so random models sample like trained ones; 4 gives a nucleus of ~4 tokens on the 0.5B shape.
def _stem(shape: str, logit_scale: float) -> str:
    return f"random-{shape}" + ("" if logit_scale == 1 else f"-x{logit_scale:g}")


def build_checkpoint(shape: str, folder: Path, *, logit_scale: float = 1.0) -> Path:
    """The random-weight f32 Hugging Face checkpoint (seed 0) every format of `shape` is converted from."""
    from rprm_lite.convert.random_model import build_random_checkpoint

    path = folder / f"{_stem(shape, logit_scale)}-hf"
    if not (path / "config.json").exists():
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        build_random_checkpoint(partial, tokenizer="qwen2", seed=0, dtype="float32", **SHAPES[shape])
        if logit_scale != 1:
            scale_tensor(partial / "model.safetensors", "model.norm.weight", logit_scale)
        partial.rename(path)  # only a finished checkpoint gets the final name
    return path


def scale_tensor(path: Path, name: str, factor: float) -> None:
    """Multiply one f32 tensor of a safetensors file in place."""
    import numpy as np

    with path.open("r+b") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        entry = json.loads(handle.read(header_size))[name]
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: expected {name} in F32, got {entry['dtype']}")
        begin, end = (8 + header_size + offset for offset in entry["data_offsets"])
        handle.seek(begin)
        values = np.frombuffer(handle.read(end - begin), dtype=np.float32) * np.float32(factor)
        handle.seek(begin)
        handle.write(values.tobytes())


def build_model(shape: str, fmt: str, folder: Path, *, logit_scale: float = 1.0) -> Path:
    """The GGUF of `shape` in format `fmt` (a FORMATS key), converted by our converter and cached in `folder`."""
    from rprm_lite.convert.converter import RANDOM_WEIGHTS_DESCRIPTION, ConvertConfig, convert

    path = folder / f"{_stem(shape, logit_scale)}-{fmt}.gguf"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        outtype, quant = FORMATS[fmt]
        checkpoint = build_checkpoint(shape, folder, logit_scale=logit_scale)
        convert(ConvertConfig(source=str(checkpoint), output=path, outtype=outtype, quant=quant,
                              description=RANDOM_WEIGHTS_DESCRIPTION))
    return path


# -- one measurement -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """What one measurement child scores: a solution, K critiques of exactly `tokens` tokens per step."""

    model: str
    k: int = 10
    tokens: int = 64
    threads: int = 2
    n_gpu_layers: int = 0
    question: str = QUESTION
    steps: tuple[str, ...] = STEPS
    kv_reuse: bool = True
    error_step: int | None = None  # rprm-lite only: mark this 1-based step wrong, so scoring stops there
    adaptive: bool = False  # rprm-lite only: adaptive K (waves of `wave`, beta rule at `confidence`)
    confidence: float = 0.8  # ScoreConfig's defaults
    wave: int = 2

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        return cls(**{f.name: tuple(data[f.name]) if f.name == "steps" else data[f.name]
                      for f in fields(cls) if f.name in data})


def run_rprm_lite(job: Job) -> dict:
    import functools

    from rprm_lite.config import ScoreConfig
    from rprm_lite.engine import Sampler

    # threshold 0: no real verdict is "wrong", so with `error_step` scoring stops exactly there; adaptive K
    # keeps the default threshold, since at 0 every step would be settled by its first wave
    adaptive = dict(adaptive=True, confidence=job.confidence, wave=job.wave) if job.adaptive else {}
    config = ScoreConfig(k=job.k, max_tokens=job.tokens, threads=job.threads, n_gpu_layers=job.n_gpu_layers,
                         kv_reuse=job.kv_reuse, all_steps=job.error_step is None,
                         threshold=0.5 if job.adaptive else 0.0, **adaptive)
    scorer = _scorer_class(job.error_step)(job.model, config)
    scorer.make_sampler = functools.partial(Sampler, n_vocab=scorer.engine.n_vocab,
                                            banned=scorer.engine.end_tokens())
    _warm_up(scorer, job)
    marks: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    result = scorer.score(job.question, job.steps, on_step=lambda *_: marks.append(time.perf_counter()))
    cpu_seconds = time.process_time() - cpu_start  # every thread of this process: less sensitive to other load
    steps = [_step(end - begin, s.generated_tokens, 0 if s.score is None else s.prompt_tokens - s.reused_tokens,
                   s.verdict)
             for begin, end, s in zip([start, *marks[:-1]], marks, result.steps, strict=True)]
    used = [s.critiques_used or len(s.p_yes) for s in result.steps if s.score is not None]
    return report(steps, fallbacks=sum(s.fallbacks for s in result.steps), critiques_per_step=sum(used) / len(used),
                  cpu_seconds=cpu_seconds)


def _scorer_class(error_step: int | None):
    """The Scorer, or a Scorer that reports step `error_step` as wrong after really scoring it.

    Random weights give meaningless verdicts; scripting the verdict (not the work) shows what early
    stop saves: the steps after the first error are never decoded.
    """
    from rprm_lite.scoring import Scorer

    if error_step is None:
        return Scorer

    class ScriptedErrorScorer(Scorer):
        def _score_step(self, solution, index, tokens, max_tokens):
            result = super()._score_step(solution, index, tokens, max_tokens)
            return replace(result, verdict="wrong") if index + 1 == error_step else result

    return ScriptedErrorScorer


def _warm_up(scorer, job: Job) -> None:
    """Size the context as scoring will and decode a few tokens, like the bare loop does before timing."""
    from rprm_lite.engine import DecodeEntry
    from rprm_lite.prompt import render
    from rprm_lite.solution import Solution

    solution = Solution.create(job.question, list(job.steps))
    prompts = [scorer.engine.tokenize_prompt(render(solution, i)) for i in range(len(job.steps))]
    scorer._fit_context(prompts)  # the exact size score() asks for, so it keeps this context
    list(scorer.engine.decode([DecodeEntry(t, i, 0, logits=True) for i, t in enumerate(prompts[0][:8])]))
    scorer.engine.clear()


def prompts_and_engine(job: Job):
    from rprm_lite.engine import Engine
    from rprm_lite.prompt import render
    from rprm_lite.solution import Solution

    engine = Engine(job.model, threads=job.threads, n_gpu_layers=job.n_gpu_layers)
    solution = Solution.create(job.question, list(job.steps))
    return engine, [engine.tokenize_prompt(render(solution, i)) for i in range(len(job.steps))]


def run_high_level(job: Job) -> dict:
    import math

    import llama_cpp
    from llama_cpp import Llama

    from rprm_lite.prompt import FALLBACK_TEXT

    engine, prompts = prompts_and_engine(job)
    yes, no = engine.tokenize(" Yes", special=False)[0], engine.tokenize(" No", special=False)[0]
    fallback = engine.tokenize(FALLBACK_TEXT, special=False)
    engine.close()
    llm = Llama(job.model, n_ctx=max(map(len, prompts)) + job.tokens + len(fallback) + 16,
                n_threads=job.threads, n_threads_batch=job.threads, n_batch=512, n_gpu_layers=job.n_gpu_layers,
                verbose=False)
    llm.create_completion(prompts[0][:8], max_tokens=1)  # warm-up
    steps: list[dict] = []
    for prompt in prompts:
        begin, generated = time.perf_counter(), 0
        for i in range(job.k):
            completion = llm.create_completion(prompt, max_tokens=job.tokens, temperature=TEMPERATURE, top_p=TOP_P,
                                               top_k=0, min_p=0.0, repeat_penalty=1.0, seed=i)
            generated += completion["usage"]["completion_tokens"]
            llm.eval(fallback)
            logits = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)  # the last token's row
            _ = 1.0 / (1.0 + math.exp(float(logits[no]) - float(logits[yes])))
        steps.append(_step(time.perf_counter() - begin, generated, None, "correct"))
    return report(steps, fallbacks=job.k * len(prompts))


def run_bare(job: Job) -> dict:
    import llama_cpp

    from rprm_lite.engine import DecodeEntry, Sampler, stream_seed
    from rprm_lite.prompt import FALLBACK_TEXT
    from rprm_lite.scoring import common_prefix

    k, tokens = job.k, job.tokens
    engine, prompts = prompts_and_engine(job)
    fallback = engine.tokenize(FALLBACK_TEXT, special=False)
    engine.ensure_context(max(map(len, prompts)) + k * (tokens + len(fallback) + 1), k + 1)
    ends, ctx, batch = engine.end_tokens(), engine.ctx, engine.batch
    list(engine.decode([DecodeEntry(t, i, 0, logits=True) for i, t in enumerate(prompts[0][:8])]))  # warm-up
    engine.clear()
    steps, previous = [], []
    for index, prompt in enumerate(prompts):  # the same KV reuse as the scorer: decode only the new suffix
        begin = time.perf_counter()
        keep = min(common_prefix(previous, prompt), len(prompt) - 1) if job.kv_reuse else 0
        for seq in range(k + 1):
            engine.trim(seq, keep if seq == 0 else 0)
        last = list(engine.decode([DecodeEntry(t, p, 0, logits=p == len(prompt) - 1)
                                   for p, t in enumerate(prompt) if p >= keep]))[-1][1]
        previous = prompt
        samplers = [Sampler(temperature=TEMPERATURE, top_p=TOP_P, seed=stream_seed(0, index, i),
                            n_vocab=engine.n_vocab, banned=ends) for i in range(k)]
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
        entries = [DecodeEntry(t, len(prompt) + tokens + j, i + 1, logits=j == len(fallback) - 1)
                   for i in range(k) for j, t in enumerate(fallback)]
        for _, row in engine.decode(entries):
            llama_cpp.llama_get_logits_ith(ctx, row)
        for sampler in samplers:
            sampler.close()
        steps.append(_step(time.perf_counter() - begin, k * tokens, len(prompt) - keep, "correct"))
    return report(steps, fallbacks=k * len(prompts))


def _step(seconds: float, generated: int, decoded_prompt: int | None, verdict: str) -> dict:
    return {"seconds": seconds, "generated_tokens": generated, "decoded_prompt_tokens": decoded_prompt,
            "verdict": verdict}


def report(steps: list[dict], **extra) -> dict:
    """Totals over the scored steps (steps left unscored by early stop count as no work), plus peak RSS."""
    scored = [s for s in steps if s["verdict"] != "not scored"]
    total = sum(s["seconds"] for s in steps)
    generated = sum(s["generated_tokens"] for s in steps)
    return {"seconds": total, "generated_tokens": generated, "tokens_per_s": generated / total,
            "seconds_per_step": [s["seconds"] for s in scored], "mean_seconds_per_step": total / len(scored),
            "steps": steps, "steps_scored": len(scored), **extra,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


VARIANTS: dict[str, Callable[[Job], dict]] = {"rprm-lite": run_rprm_lite, "llama-high-level": run_high_level,
                                              "bare-decode": run_bare}


# -- child processes -----------------------------------------------------------------------------
class MeasurementError(RuntimeError):
    pass


@dataclass
class Child:
    """Runs `variant` of `module` in a fresh Python process, so its peak RSS and warm-up are its own."""

    module: str = "rprm_lite.bench.speed_score"
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, variant: str, job) -> dict:
        command = [sys.executable, "-m", self.module, "--child", variant, "--job", json.dumps(asdict(job))]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, **self.env})
        if done.returncode != 0:
            raise MeasurementError(f"{variant} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def run_child_here(variants: dict, variant: str, job_json: str, job_class=Job) -> None:
    """The child's side of `Child`: run one variant and print its result as the last stdout line."""
    print(json.dumps(variants[variant](job_class.from_json(job_json))))


def kv_cache_mb(shape: str, n_cells: int) -> float:
    dims = SHAPES[shape]
    head_dim = dims["hidden"] // dims["n_head"]
    return n_cells * dims["n_layer"] * 2 * dims["n_kv_head"] * head_dim * 2 / 2**20  # f16 K and V


# -- issue 2's benchmark ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SCORING_SHAPES, default="qwen2.5-0.5b")
    parser.add_argument("--quant", default="Q8_0", type=str.upper, choices=sorted(FORMATS),
                        help="format of the random model")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64, help="fixed critique length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers to offload (-1: all)")
    parser.add_argument("--logit-scale", type=float, default=1.0,
                        help="multiply the random model's logits (4: peaked like a trained model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model", type=Path, help="use this GGUF instead of building a random one")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child_here(VARIANTS, args.child, args.job)
        return
    model = args.model or build_model(args.shape, args.quant, args.out / "models", logit_scale=args.logit_scale)
    job = Job(str(model), k=args.k, tokens=args.tokens, threads=args.threads, n_gpu_layers=args.n_gpu_layers)
    results = {name: Child()(name, job) for name in VARIANTS}
    a, b, c = results["rprm-lite"], results["llama-high-level"], results["bare-decode"]
    budget = model.stat().st_size / 2**20 + kv_cache_mb(args.shape, 600 + args.k * (args.tokens + 16)) + 400
    summary = {
        "model": model.name, "model_mb": model.stat().st_size / 2**20, "k": args.k, "critique_tokens": args.tokens,
        "threads": args.threads, "n_gpu_layers": args.n_gpu_layers, "logit_scale": args.logit_scale,
        "variants": results,
        "speedup_vs_high_level": a["tokens_per_s"] / b["tokens_per_s"],
        "fraction_of_bare_decode": a["tokens_per_s"] / c["tokens_per_s"],
        "rss_budget_mb": budget, "rss_within_budget": a["peak_rss_mb"] <= budget,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_score.json").write_text(json.dumps(summary, indent=2))
    print(summary_table(summary))


def summary_table(summary: dict) -> str:
    rows = [(name, f"{r['tokens_per_s']:.1f}", f"{r['mean_seconds_per_step']:.2f}", f"{r['peak_rss_mb']:.0f}")
            for name, r in summary["variants"].items()]
    lines = [table(("variant", "generated tok/s", "s/step", "peak RSS MB"), rows, align="lrrr")]
    lines += ["", f"model {summary['model']} ({summary['model_mb']:.0f} MB), K={summary['k']}, "
             f"{summary['critique_tokens']} tokens per critique, {summary['threads']} threads",
             f"rprm-lite / high-level Llama: {summary['speedup_vs_high_level']:.2f}x (target >= 1.5x)",
             f"rprm-lite / bare decode loop: {summary['fraction_of_bare_decode']:.3f} (target >= 0.9)",
             f"rprm-lite peak RSS {summary['variants']['rprm-lite']['peak_rss_mb']:.0f} MB, budget "
             f"{summary['rss_budget_mb']:.0f} MB (model + KV cache + 400 MB)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
