"""The speed and memory suite (issue 5) in one command: prints markdown tables, writes JSON and a .md.

    python -m rprm_lite.bench.speed [--quick] [--shape qwen2.5-0.5b|tiny] [--threads 2]
                                    [--n-gpu-layers N] [--device auto|cpu|cuda] [--out bench/results]

Every number comes from this one run, on random-weight models with real shapes and the real Qwen2 tokenizer.
All formats are converted by our converter from one f32 checkpoint (seed 0), so transformers and llama.cpp
run the same weights. Decoding speed does not depend on weight values, but llama.cpp's top-p sampler does:
raw random weights give nearly flat logits, its slowest case, so by default the checkpoint's final norm is
scaled (--logit-scale 4) to make next-token distributions as peaked as a trained model's; --logit-scale 1
measures raw random weights. Critiques have a fixed length:
end-of-text is banned (transformers: min_new_tokens = max_new_tokens), so every critique takes the fallback
question and every variant does the same work. Each measurement runs in its own process (its own peak RSS).

1. reference: rprm-lite against the R-PRM pipeline as a user without a GPU would run it: transformers
   (fp32 on CPU), K sampled critiques from one `generate(num_return_sequences=K)`, then a second forward
   pass over prompt + critique + fallback for P(Yes). Both score the same first step(s) from an empty cache.
2. engine: rprm-lite's generated tokens/s against a bare llama_decode loop at the same batch, per K.
3. scaling: seconds per step over a 12-step solution with and without KV reuse; early stop: the same
   solution with step 3 reported wrong (scripted verdict, real decoding) against scoring all steps.
4. formats: F16, Q8_0, Q4_K_M (tokens/s, file size, peak RSS).
5. cold start: `rprm-lite score` (default settings) from process start to the first sampled token.
`--n-gpu-layers` goes to every llama.cpp variant; `--device` picks the transformers device.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rprm_lite.markdown import table

from .report_files import DEFAULT_OUT
from .shapes import SCORING_SHAPES, SHAPES
from .speed_jobs import (
    QUESTION,
    STEPS,
    TEMPERATURE,
    TOP_P,
    VARIANTS,
    Child,
    Job,
    MeasurementError,
    report,
    run_child_here,
)
from .speed_models import FORMATS, build_checkpoint, build_model

LONG_QUESTION = ("A store sells pencils at $0.25 each and notebooks at $1.50 each. Maria buys 12 pencils and "
                 "4 notebooks, pays with a $20 bill, and then uses part of her change to buy 3 erasers at $0.40 "
                 "each. She splits the remaining money equally with her brother. How much does each get?")
LONG_STEPS = (
    "The pencils cost 12 x $0.25 = $3.00.", "The notebooks cost 4 x $1.50 = $6.00.",
    "Together the pencils and notebooks cost $3.00 + $6.00 = $9.00.",
    "Maria pays with a $20 bill, so her change is $20.00 - $9.00 = $11.00.",
    "Each eraser costs $0.40, so 3 erasers cost 3 x $0.40 = $1.20.",
    "After buying the erasers she has $11.00 - $1.20 = $9.80 left.",
    "She splits the remaining money equally with her brother, so the money is divided by 2.",
    "Each of them gets $9.80 / 2 = $4.90.", "Check the purchases: $3.00 + $6.00 + $1.20 = $10.20 was spent.",
    "Check the remainder: $20.00 - $10.20 = $9.80, which matches step 6.",
    "Check the split: $4.90 + $4.90 = $9.80, so nothing is left over.", "The answer is $4.90.",
)


@dataclass(frozen=True)
class Sizes:
    tokens: int  # critique length for reference, engine and formats
    engine_ks: tuple[int, ...]  # the largest is also the K of the formats section
    reference_k: int
    reference_steps: int  # transformers is slow on CPU: it scores the first N steps of the 4-step solution
    scaling_k: int
    scaling_tokens: int
    scaling_steps: int
    error_step: int
    cold_runs: int


FULL = Sizes(tokens=64, engine_ks=(1, 4, 10), reference_k=10, reference_steps=1, scaling_k=4, scaling_tokens=32,
             scaling_steps=12, error_step=3, cold_runs=3)
QUICK = Sizes(tokens=8, engine_ks=(1, 2), reference_k=2, reference_steps=1, scaling_k=2, scaling_tokens=4,
              scaling_steps=4, error_step=2, cold_runs=1)
FORMAT_ROWS = ("F16", "Q8_0", "Q4_K_M")
DEFAULT_LOGIT_SCALE = 4.0  # see speed_models.py: sample like a trained model


@dataclass(frozen=True)
class ReferenceJob(Job):
    checkpoint: str = ""
    device: str = "auto"
    torch_dtype: str = "auto"


# -- the transformers reference (runs in a child) ------------------------------------------------
def run_transformers(job: ReferenceJob) -> dict:
    import torch
    import transformers

    from rprm_lite.prompt import FALLBACK_TEXT, render_text
    from rprm_lite.solution import Solution

    torch.set_num_threads(job.threads)
    device = resolve_device(job.device, torch.cuda.is_available())
    dtype = resolve_dtype(job.torch_dtype, device)
    begin = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(job.checkpoint)
    model = transformers.AutoModelForCausalLM.from_pretrained(job.checkpoint, dtype=getattr(torch, dtype))
    model = model.to(device).eval()
    load_seconds = time.perf_counter() - begin
    yes, no = (tokenizer.encode(word, add_special_tokens=False)[0] for word in (" Yes", " No"))
    fallback = torch.tensor([tokenizer.encode(FALLBACK_TEXT, add_special_tokens=False)], device=device)
    sampling = dict(do_sample=True, temperature=TEMPERATURE, top_p=TOP_P, top_k=0, num_return_sequences=job.k,
                    pad_token_id=tokenizer.eos_token_id)
    solution = Solution.create(job.question, list(job.steps))
    torch.manual_seed(0)

    def score_step(ids, tokens: int) -> tuple[float, float, int]:
        """Seconds in generate, seconds in the scoring pass, and the number of generated tokens."""
        begin = time.perf_counter()
        critiques = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                   min_new_tokens=tokens, **sampling)
        _sync(torch, device)
        generated = time.perf_counter()
        full = torch.cat([critiques, fallback.expand(critiques.shape[0], -1)], dim=1)
        logits = model(full, logits_to_keep=1).logits[:, -1, [yes, no]]
        _ = torch.softmax(logits.float(), dim=-1)[:, 0].tolist()  # P(Yes) per critique
        return generated - begin, time.perf_counter() - generated, critiques[:, ids.shape[1]:].numel()

    steps = []
    with torch.inference_mode():
        score_step(tokenizer("warm up", return_tensors="pt").input_ids.to(device), 2)
        for index in range(len(job.steps)):
            ids = tokenizer(render_text(solution, index), return_tensors="pt").input_ids.to(device)
            generate_s, score_pass_s, generated = score_step(ids, job.tokens)
            steps.append({"seconds": generate_s + score_pass_s, "generated_tokens": generated,
                          "decoded_prompt_tokens": job.k * ids.shape[1], "verdict": "correct",
                          "generate_seconds": generate_s, "score_pass_seconds": score_pass_s})
    result = report(steps, fallbacks=job.k * len(steps), load_seconds=load_seconds, device=device,
                    torch_dtype=dtype, torch=torch.__version__, transformers=transformers.__version__)
    if device == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def resolve_device(device: str, cuda_available: bool) -> str:
    return ("cuda" if cuda_available else "cpu") if device == "auto" else device


def resolve_dtype(dtype: str, device: str) -> str:
    """fp32 on CPU (what a user without a GPU runs); bf16 on CUDA, as R-PRM runs there."""
    return ("float32" if device == "cpu" else "bfloat16") if dtype == "auto" else dtype


def _sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


CHILDREN = {**VARIANTS, "transformers": run_transformers}


# -- the suite -----------------------------------------------------------------------------------
@dataclass
class Suite:
    shape: str
    sizes: Sizes
    threads: int
    n_gpu_layers: int
    device: str
    torch_dtype: str
    out: Path
    logit_scale: float = DEFAULT_LOGIT_SCALE
    adaptive: bool = False  # the reference section also measures rprm-lite with adaptive K
    models: dict[str, Path] = field(default_factory=dict)
    checkpoint: Path | None = None
    child: Child = field(default_factory=lambda: Child(module="rprm_lite.bench.speed"))

    def prepare(self, formats: tuple[str, ...] = tuple(FORMATS)) -> None:
        folder = self.out / "models"
        self.models = {fmt: build_model(self.shape, fmt, folder, logit_scale=self.logit_scale) for fmt in formats}
        self.checkpoint = build_checkpoint(self.shape, folder, logit_scale=self.logit_scale)

    def job(self, fmt: str = "Q8_0", **changes) -> Job:
        return Job(str(self.models[fmt]), threads=self.threads, n_gpu_layers=self.n_gpu_layers,
                   **{"tokens": self.sizes.tokens, **changes})

    def measure(self, variant: str, job: Job) -> dict:
        _say(f"{variant}: {Path(job.model).name or 'transformers'}, K={job.k}, {job.tokens} tokens, "
             f"{len(job.steps)} step(s)" + ("" if job.kv_reuse else ", no KV reuse")
             + (f", error at step {job.error_step}" if job.error_step else ""))
        return self.child(variant, job)


def engine_section(suite: Suite) -> dict:
    rows = []
    for k in suite.sizes.engine_ks:
        lite, bare = (suite.measure(v, suite.job(k=k)) for v in ("rprm-lite", "bare-decode"))
        rows.append({"k": k, "rprm_lite": lite, "bare_decode": bare,
                     "ratio": lite["tokens_per_s"] / bare["tokens_per_s"]})
    return {"tokens": suite.sizes.tokens, "steps": len(STEPS), "model": "Q8_0", "target_ratio": 0.9, "rows": rows}


def reference_section(suite: Suite) -> dict:
    sizes = suite.sizes
    steps = STEPS[:sizes.reference_steps]
    job = ReferenceJob("", k=sizes.reference_k, tokens=sizes.tokens, threads=suite.threads, steps=steps,
                       checkpoint=str(suite.checkpoint), device=suite.device, torch_dtype=suite.torch_dtype)
    reference = suite.measure("transformers", job)
    lite = {fmt: suite.measure("rprm-lite", suite.job(fmt, k=sizes.reference_k, steps=steps))
            for fmt in ("Q8_0", "F32")}
    if suite.adaptive:
        lite["Q8_0 adaptive"] = suite.measure("rprm-lite", suite.job(k=sizes.reference_k, steps=steps, adaptive=True))
    speedup = {fmt: reference["mean_seconds_per_step"] / r["mean_seconds_per_step"] for fmt, r in lite.items()}
    result = {"k": sizes.reference_k, "tokens": sizes.tokens, "steps": len(steps), "transformers": reference,
              "rprm_lite": lite, "speedup": speedup, "target_speedup": 10.0}
    if suite.adaptive:
        job = suite.job(adaptive=True)
        from rprm_lite.config import ScoreConfig

        result["adaptive"] = {"adaptive_rule": ScoreConfig().adaptive_rule, "confidence": job.confidence,
                              "wave": job.wave}
    return result


def scaling_section(suite: Suite) -> dict:
    sizes = suite.sizes
    base = suite.job(k=sizes.scaling_k, tokens=sizes.scaling_tokens, question=LONG_QUESTION,
                     steps=LONG_STEPS[:sizes.scaling_steps])
    runs = {"kv_reuse": suite.measure("rprm-lite", base),
            "no_kv_reuse": suite.measure("rprm-lite", replace(base, kv_reuse=False)),
            "early_stop": suite.measure("rprm-lite", replace(base, error_step=sizes.error_step))}
    totals = {name: {"steps_scored": r["steps_scored"], "seconds": r["seconds"],
                     "generated_tokens": r["generated_tokens"],
                     "decoded_prompt_tokens": sum(s["decoded_prompt_tokens"] for s in r["steps"])}
              for name, r in runs.items()}
    return {"k": sizes.scaling_k, "tokens": sizes.scaling_tokens, "n_steps": len(base.steps),
            "error_step": sizes.error_step, **runs, "totals": totals}


def formats_section(suite: Suite, engine: dict) -> dict:
    k = max(suite.sizes.engine_ks)
    done = {row["k"]: row["rprm_lite"] for row in engine.get("rows", [])}
    rows = {}
    for fmt in FORMAT_ROWS:
        result = done[k] if fmt == "Q8_0" and k in done else suite.measure("rprm-lite", suite.job(fmt, k=k))
        rows[fmt] = {**result, "file_mb": suite.models[fmt].stat().st_size / 2**20}
    return {"k": k, "tokens": suite.sizes.tokens, "steps": len(STEPS), "rows": rows}


# -- cold start ----------------------------------------------------------------------------------
# Runs `rprm-lite score` in a fresh interpreter with timing hooks on llama.cpp's entry points; at the
# first sampled token it writes the marks (seconds since the parent started the process) and exits.
COLD_START = r"""
import json, os, sys, time
t0 = float(os.environ["RPRM_BENCH_T0"])
marks = {"interpreter_ready": time.time() - t0}
def mark(name):
    marks.setdefault(name, time.time() - t0)
import rprm_lite.cli
mark("cli_imported")
import llama_cpp
from rprm_lite import engine
mark("runtime_imported")
def timed(name, function):
    def wrapper(*args):
        mark(name + "_start")
        value = function(*args)
        mark(name + "_end")
        return value
    return wrapper
llama_cpp.llama_model_load_from_file = timed("model_load", llama_cpp.llama_model_load_from_file)
llama_cpp.llama_init_from_model = timed("context", llama_cpp.llama_init_from_model)
llama_cpp.llama_decode = timed("decode", llama_cpp.llama_decode)
sample = engine.Sampler.sample
def first_token(self, eng, row):
    token = sample(self, eng, row)
    mark("first_token")
    marks["torch_imported"] = "torch" in sys.modules
    marks["transformers_imported"] = "transformers" in sys.modules
    with open(os.environ["RPRM_BENCH_OUT"], "w") as out:
        json.dump(marks, out)
    os._exit(0)
engine.Sampler.sample = first_token
rprm_lite.cli.main(sys.argv[1:])
"""


def cold_start_section(suite: Suite) -> dict:
    runs = [_cold_start_once(suite) for _ in range(suite.sizes.cold_runs)]
    median = {key: statistics.median(run[key] for run in runs) for key in COLD_START_PHASES}
    return {"command": "rprm-lite score solution.json --model Q8_0 --threads N (defaults: K=10, 4096 tokens)",
            "runs": runs, "median": median, "target_s": 1.0,
            "torch_imported": any(r["torch_imported"] or r["transformers_imported"] for r in runs)}


COLD_START_PHASES = ("time_to_first_token_s", "startup_s", "model_load_s", "prefill_s", "other_s", "minus_load_s")


def _cold_start_once(suite: Suite) -> dict:
    with tempfile.TemporaryDirectory(prefix="rprm-cold-") as scratch:
        solution, out = Path(scratch) / "solution.json", Path(scratch) / "marks.json"
        solution.write_text(json.dumps({"question": QUESTION, "steps": list(STEPS[:1])}))
        command = [sys.executable, "-c", COLD_START, "score", str(solution), "--model", str(suite.models["Q8_0"]),
                   "--threads", str(suite.threads), "--n-gpu-layers", str(suite.n_gpu_layers)]
        _say("cold start: rprm-lite score (default K and max tokens) until the first sampled token")
        env = {**os.environ, "RPRM_BENCH_T0": repr(time.time()), "RPRM_BENCH_OUT": str(out)}
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if not out.exists():
            raise MeasurementError(f"cold start wrote no timings (exit {done.returncode}):\n{done.stderr[-2000:]}")
        marks = json.loads(out.read_text())
    load = marks["model_load_end"] - marks["model_load_start"]
    prefill = marks["first_token"] - marks["decode_start"]
    return {**marks, "time_to_first_token_s": marks["first_token"], "startup_s": marks["runtime_imported"],
            "model_load_s": load, "prefill_s": prefill, "other_s": marks["first_token"] - load - prefill
            - marks["runtime_imported"], "minus_load_s": marks["first_token"] - load,
            # the parts of "other": CLI, reading the solution and the GGUF pre-flight; then engine set-up
            "before_load_s": marks["model_load_start"] - marks["runtime_imported"],
            "after_load_s": marks["decode_start"] - marks["model_load_end"]}


# -- running and reporting ----------------------------------------------------------------------
SECTIONS = ("reference", "engine", "scaling", "formats", "cold_start")  # in table order


def run_suite(suite: Suite, only: tuple[str, ...] = SECTIONS, save=lambda result: None) -> dict:
    """Run the chosen sections; `save(result)` after each one keeps what a killed run finished."""
    started = time.time()
    # the formats section needs every format; the others only Q8_0 and the reference's F32
    suite.prepare(tuple(FORMATS) if "formats" in only else ("F32", "Q8_0"))
    result: dict = {"meta": metadata(suite)}
    runners = {"engine": lambda: engine_section(suite),  # first: formats reuses its Q8_0 row
               "reference": lambda: reference_section(suite), "scaling": lambda: scaling_section(suite),
               "formats": lambda: formats_section(suite, result.get("engine", {})),
               "cold_start": lambda: cold_start_section(suite)}
    for name in (name for name in runners if name in only):
        try:
            result[name] = runners[name]()
        except MeasurementError as exc:
            _say(f"{name} failed: {exc}")
            result[name] = {"error": str(exc)}
        result["meta"] |= {"wall_s": time.time() - started, "load_average_end": list(os.getloadavg())}
        save(result)
    return result


def metadata(suite: Suite) -> dict:
    import importlib.metadata

    import llama_cpp

    import rprm_lite

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"shape": suite.shape, "dims": SHAPES[suite.shape], "sizes": asdict(suite.sizes),
            "quick": suite.sizes == QUICK, "logit_scale": suite.logit_scale, "threads": suite.threads,
            "n_gpu_layers": suite.n_gpu_layers,
            "device": suite.device, "torch_dtype": suite.torch_dtype, "cpu_count": os.cpu_count(),
            "gpu_offload_build": bool(llama_cpp.llama_supports_gpu_offload()),
            "load_average_start": list(os.getloadavg()),
            "models": {fmt: {"file": p.name, "mb": p.stat().st_size / 2**20, "sha256": file_sha256(p)}
                       for fmt, p in suite.models.items()},
            "versions": {"rprm_lite": rprm_lite.__version__, "llama_cpp_python": llama_cpp.__version__,
                         "torch": version("torch"), "transformers": version("transformers"),
                         "python": sys.version.split()[0]}}


def file_sha256(path: Path) -> str:
    """sha256 of a model file, cached beside it while its size and mtime stay the same."""
    from rprm_lite.model_file import file_sha256 as compute

    stamp, key = path.with_name(path.name + ".sha256"), f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
    if stamp.exists() and stamp.read_text().split()[-1] == key:
        return stamp.read_text().split()[0]
    digest = compute(path)
    stamp.write_text(f"{digest} {key}")
    return digest


# -- tables --------------------------------------------------------------------------------------
def tables(result: dict) -> str:
    parts = [_header(result["meta"])]
    renderers = {"reference": _reference_table, "engine": _engine_table, "scaling": _scaling_table,
                 "formats": _formats_table, "cold_start": _cold_start_table}
    for name in (name for name in SECTIONS if name in result):
        section, render = result[name], renderers[name]
        parts.append(f"### {name}\nfailed: {section['error']}" if "error" in section else render(section))
    return "\n\n".join(parts)


def _header(meta: dict) -> str:
    dims = ", ".join(f"{k} {v}" for k, v in meta["dims"].items())
    gpu = f"n_gpu_layers {meta['n_gpu_layers']}" + ("" if meta["gpu_offload_build"] else " (CPU build of llama.cpp)")
    return (f"## rprm-lite speed suite{' (quick)' if meta['quick'] else ''}\n"
            f"Random-weight {meta['shape']} ({dims}), logits x{meta['logit_scale']:g}, real Qwen2 tokenizer, fixed "
            f"critique length (end-of-text banned); {meta['threads']} threads, {gpu}, {meta['cpu_count']} CPUs; "
            f"llama-cpp-python {meta['versions']['llama_cpp_python']}, torch {meta['versions']['torch']}, transformers "
            f"{meta['versions']['transformers']}. Load average {_load(meta['load_average_start'])} at the start, "
            f"{_load(meta.get('load_average_end', []))} at the end; {meta.get('wall_s', 0):.0f} s in all.")


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def _table(head: tuple[str, ...], rows: list[tuple]) -> str:
    """The suite's tables: the first column names the row, the others are numbers (floats with 2 decimals)."""
    cells = [[f"{c:.2f}" if isinstance(c, float) else c for c in row] for row in rows]
    return table(head, cells, align="l" + "r" * (len(head) - 1))


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _reference_table(r: dict) -> str:
    t = r["transformers"]
    rows = [(f"transformers generate + score pass ({t['device']})", f"{t['torch_dtype']} (HF)",
             t["mean_seconds_per_step"], _mean(t, "generate_seconds"), _mean(t, "score_pass_seconds"),
             t["tokens_per_s"], round(t["peak_rss_mb"]), "1.0x")]
    rows += [("rprm-lite", f"{fmt} GGUF", x["mean_seconds_per_step"], "", "", x["tokens_per_s"],
              round(x["peak_rss_mb"]), f"{r['speedup'][fmt]:.1f}x") for fmt, x in r["rprm_lite"].items()]
    best = r["speedup"]["Q8_0"]
    adaptive, how = r["rprm_lite"].get("Q8_0 adaptive"), r.get("adaptive", {})
    note = ("" if adaptive is None else
            f" Adaptive K ({how.get('adaptive_rule')} rule, c={how.get('confidence')}, waves of {how.get('wave')}): "
            f"{adaptive['critiques_per_step']:.1f} critiques per step of "
            f"K={r['k']}, {r['speedup']['Q8_0 adaptive']:.1f}x the reference, "
            f"{r['speedup']['Q8_0 adaptive'] / best:.2f}x fixed-K rprm-lite. Where it stops depends on the random "
            "weights' P(Yes); `rprm-lite bench adaptive-study` measures it on real critiques.")
    return "\n".join([
        f"### 1. rprm-lite vs the R-PRM reference pipeline (K={r['k']}, {r['tokens']}-token critiques, "
        f"first {r['steps']} step(s), empty cache)",
        _table(("pipeline", "weights", "s/step", "generate s", "score pass s", "generated tok/s", "peak RSS MB",
                 "speedup"), rows),
        f"transformers load {t['load_seconds']:.1f} s (not counted). Target rprm-lite (Q8_0) >= "
        f"{r['target_speedup']:.0f}x faster per scored step: {_met(best >= r['target_speedup'])} ({best:.1f}x; "
        f"same-precision F32 GGUF: {r['speedup']['F32']:.1f}x)." + note])


def _mean(result: dict, key: str) -> float:
    return statistics.mean(step[key] for step in result["steps"])


def _engine_table(r: dict) -> str:
    rows = [(row["k"], row["rprm_lite"]["tokens_per_s"], row["bare_decode"]["tokens_per_s"], f"{row['ratio']:.3f}",
             row["rprm_lite"]["mean_seconds_per_step"], round(row["rprm_lite"]["peak_rss_mb"])) for row in r["rows"]]
    ok = all(row["ratio"] >= r["target_ratio"] for row in r["rows"])
    return "\n".join([
        f"### 2. Engine efficiency ({r['model']}, {r['steps']}-step solution, {r['tokens']}-token critiques)",
        _table(("K", "rprm-lite tok/s", "bare llama_decode tok/s", "ratio", "rprm-lite s/step", "peak RSS MB"),
                rows),
        f"Target ratio >= {r['target_ratio']} at every K: {_met(ok)}."])


def _scaling_table(r: dict) -> str:
    with_reuse, without = r["kv_reuse"]["steps"], r["no_kv_reuse"]["steps"]
    rows = [(i + 1, a["seconds"], a["decoded_prompt_tokens"], b["seconds"], b["decoded_prompt_tokens"])
            for i, (a, b) in enumerate(zip(with_reuse, without, strict=True))]
    names = {"kv_reuse": f"all {r['n_steps']} steps, KV reuse", "no_kv_reuse": f"all {r['n_steps']} steps, no reuse",
             "early_stop": f"step {r['error_step']} wrong, early stop"}
    totals = [(names[n], t["steps_scored"], t["generated_tokens"], t["decoded_prompt_tokens"], t["seconds"])
              for n, t in r["totals"].items()]
    full, early = r["totals"]["kv_reuse"], r["totals"]["early_stop"]
    return "\n".join([
        f"### 3. Scaling (Q8_0, K={r['k']}, {r['tokens']}-token critiques, {r['n_steps']}-step solution)",
        _table(("step", "s, KV reuse", "prompt tokens decoded", "s, no KV reuse", "prompt tokens decoded"), rows),
        "", _table(("run", "steps scored", "generated tokens", "prompt tokens decoded", "seconds"), totals),
        f"Early stop (verdict of step {r['error_step']} scripted as wrong; its decoding is real) decodes "
        f"{1 - _tokens(early) / _tokens(full):.0%} fewer tokens and takes"
        f" {1 - early['seconds'] / full['seconds']:.0%} less time than scoring every step."])


def _tokens(totals: dict) -> int:
    return totals["generated_tokens"] + totals["decoded_prompt_tokens"]


def _formats_table(r: dict) -> str:
    rows = [(fmt, round(x["file_mb"]), x["tokens_per_s"], x["mean_seconds_per_step"], round(x["peak_rss_mb"]))
            for fmt, x in r["rows"].items()]
    return "\n".join([f"### 4. Model formats (rprm-lite, K={r['k']}, {r['tokens']}-token critiques, "
                      f"{r['steps']}-step solution)",
                      _table(("format", "file MB", "generated tok/s", "s/step", "peak RSS MB"), rows)])


def _cold_start_table(r: dict) -> str:
    keys = COLD_START_PHASES
    rows = [(str(i + 1), *(run[k] for k in keys), run["torch_imported"]) for i, run in enumerate(r["runs"])]
    rows.append(("median", *(r["median"][k] for k in keys), r["torch_imported"]))
    m = r["median"]
    return "\n".join([
        f"### 5. Cold start: {r['command']}, from process start to the first sampled token",
        _table(("run", "to first token s", "interpreter + imports s", "model load s", "prompt prefill s", "other s",
                 "minus model load s", "torch imported"), rows),
        "Other = CLI parsing, reading the solution, GGUF pre-flight, vocabulary scans, tokenizing, KV cache "
        "allocation. Model file in the page cache (warm). Target under 1 s plus model load: "
        f"{_met(m['minus_load_s'] < r['target_s'])} ({m['minus_load_s']:.2f} s, of which prompt prefill "
        f"{m['prefill_s']:.2f} s); without prefill {_met(m['minus_load_s'] - m['prefill_s'] < r['target_s'])}."])


def _say(text: str) -> None:
    print(f"[speed] {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SCORING_SHAPES, default="qwen2.5-0.5b")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the whole suite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded by llama.cpp (-1: all)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="transformers device (auto: cuda when available)")
    parser.add_argument("--torch-dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="transformers dtype (auto: float32 on cpu, bfloat16 on cuda)")
    parser.add_argument("--logit-scale", type=float, default=DEFAULT_LOGIT_SCALE,
                        help="multiply the random model's logits: 4 samples like a trained model (a top-p nucleus "
                             "of a few tokens), 1 is raw random weights (nearly flat, llama.cpp's slowest top-p)")
    parser.add_argument("--only", type=lambda text: tuple(text.split(",")), default=SECTIONS,
                        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--tokens", type=int, help="critique length of the reference, engine and formats sections "
                        "(default: 64, --quick 8): a shorter run")
    parser.add_argument("--adaptive", action="store_true",
                        help="also measure rprm-lite with adaptive K in the reference section")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child_here(CHILDREN, args.child, args.job, ReferenceJob if args.child == "transformers" else Job)
        return 0
    sizes = QUICK if args.quick else FULL
    if args.tokens is not None:
        sizes = replace(sizes, tokens=args.tokens)
    suite = Suite(args.shape, sizes, args.threads, args.n_gpu_layers, args.device,
                  args.torch_dtype, args.out, args.logit_scale, adaptive=args.adaptive)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    name = ("speed" + ("-quick" if args.quick else "") + ("" if args.tokens is None else f"-{args.tokens}-tokens")
            + ("" if args.logit_scale == DEFAULT_LOGIT_SCALE else f"-logits-x{args.logit_scale:g}")
            + ("" if set(args.only) == set(SECTIONS) else "-" + "-".join(n for n in SECTIONS if n in args.only))
            + ("-adaptive" if args.adaptive else ""))

    def save(result: dict) -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
        (args.out / f"{name}.md").write_text(tables(result) + "\n")

    result = run_suite(suite, args.only, save)
    print(tables(result))
    return 1 if any("error" in result[key] for key in result if key != "meta") else 0


if __name__ == "__main__":
    sys.exit(main())
