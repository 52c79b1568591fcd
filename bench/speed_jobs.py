"""One measurement of the speed benchmarks: the `Job` a child process scores, the variants it can run, and the
child-process protocol.

A variant scores the job's solution with K critiques per step of exactly `tokens` tokens (end-of-text banned):
`rprm-lite` (the Scorer), `llama-high-level` (llama-cpp-python's `Llama`, as a user without rprm-lite would
write it) or `bare-decode` (a bare llama_decode loop: the engine's ceiling); `score_speed.py` compares the three.
`Child` runs one variant in a fresh Python process (`python -m <module> --child VARIANT --job JSON`), so its
peak RSS and warm-up are its own; that module's `main` answers with `run_child_here`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

QUESTION = ("A baker makes 24 muffins. She sells 15 of them and then bakes 8 more. "
            "How many muffins does she have now?")
STEPS = ("The baker starts with 24 muffins.", "After selling 15 muffins she has 24 - 15 = 9 muffins.",
         "After baking 8 more she has 9 + 8 = 17 muffins.", "The answer is 17.")
TEMPERATURE = TOP_P = 0.95  # the released recipe


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
                  cpu_seconds=cpu_seconds, weight_buffers=scorer.engine.weight_buffers,
                  buffer_rule=scorer.engine.buffer_rule.describe())


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
    from rprm_lite.weight_placement import apply_to_llama_cpp

    apply_to_llama_cpp()  # the same buffer-type rule as the runtime's engine

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

    module: str = "rprm_lite.bench.score_speed"
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

