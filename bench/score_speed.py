"""Scoring speed: rprm-lite against a high-level `Llama` loop and a bare llama.cpp decode loop.

    python -m rprm_lite.bench.score_speed [--shape qwen2.5-0.5b] [--quant Q8_0] [--k 10] [--tokens 64]
                                          [--n-gpu-layers N] [--buffers]

Each variant scores the same fixed 4-step solution with K critiques per step of a fixed length
(end-of-text is banned, so every critique runs to the token budget and takes the fallback question),
in its own process so that peak RSS is its own:
  (a) rprm-lite: the Scorer (K streams in one batch per token, KV reuse across steps);
  (b) llama-cpp-python's high-level `Llama`: K completions one after another, then P(Yes) by
      evaluating the fallback question after each, as a user without rprm-lite would write it;
  (c) the engine ceiling: a bare loop of llama_decode over the same batches with llama.cpp's C
      samplers and no per-token Python work beyond filling the batch.
Prints a markdown table and writes JSON (`speed_score.json`; ratios measured in one run; never a test).

`--buffers` measures the weight-placement rule (rprm_lite/weight_placement.py): (a) under RPRM_EXTRA_BUFFERS=auto (the
default rule), =on (llama.cpp's default: AMX and CPU_REPACK where the CPU has them) and =off, written to
`speed_buffers.json`. On a CPU without AMX, auto is on; =off shows what a CPU with AMX gives up besides AMX.
The variants and their child processes are in `speed_jobs.py`, the random models in `speed_models.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rprm_lite.markdown import table

from .report_files import DEFAULT_OUT
from .shapes import SCORING_SHAPES
from .speed_jobs import VARIANTS, Child, Job, run_child_here
from .speed_models import FORMATS, build_model, kv_cache_mb


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
    parser.add_argument("--buffers", action="store_true",
                        help="compare RPRM_EXTRA_BUFFERS=auto|on|off for rprm-lite instead of the three variants")
    parser.add_argument("--repeats", type=int, default=3, help="--buffers: interleaved runs per setting (median)")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child_here(VARIANTS, args.child, args.job)
        return
    model = args.model or build_model(args.shape, args.quant, args.out / "models", logit_scale=args.logit_scale)
    job = Job(str(model), k=args.k, tokens=args.tokens, threads=args.threads, n_gpu_layers=args.n_gpu_layers)
    if args.buffers:
        compare_buffers(model, job, args.out, repeats=args.repeats)
        return
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


def compare_buffers(model: Path, job: Job, out: Path, repeats: int = 3) -> None:
    """rprm-lite under each RPRM_EXTRA_BUFFERS setting, each in its own process, the settings interleaved
    `repeats` times; each setting's run of median speed is kept (so a burst of other load hits them alike)."""
    settings = ("auto", "on", "off")
    trials = {setting: [] for setting in settings}
    for _ in range(repeats):
        for setting in settings:
            trials[setting].append(Child(env={"RPRM_EXTRA_BUFFERS": setting})("rprm-lite", job))
    runs = {setting: sorted(runs, key=lambda run: run["tokens_per_s"])[len(runs) // 2]
            for setting, runs in trials.items()}
    summary = {"model": model.name, "model_mb": model.stat().st_size / 2**20, "k": job.k,
               "critique_tokens": job.tokens, "threads": job.threads, "repeats": repeats, "runs": runs,
               "auto_vs_on": runs["auto"]["tokens_per_s"] / runs["on"]["tokens_per_s"],
               "off_vs_on": runs["off"]["tokens_per_s"] / runs["on"]["tokens_per_s"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed_buffers.json").write_text(json.dumps(summary, indent=2))
    rows = [(setting, run["buffer_rule"].split(" (")[0].removeprefix("extra buffer types "),
             ", ".join(f"{name} {size:.0f} MiB" for name, size in run["weight_buffers"].items()),
             f"{run['tokens_per_s']:.1f}", f"{run['mean_seconds_per_step']:.2f}",
             f"{run['tokens_per_s'] / runs['on']['tokens_per_s']:.2f}")
            for setting, run in runs.items()]
    print(table(("RPRM_EXTRA_BUFFERS", "extra buffers", "weights in", "generated tok/s", "s/step", "vs on"), rows,
                align="lllrrr"))
    print(f"\nmodel {model.name} ({summary['model_mb']:.0f} MB), K={job.k}, {job.tokens} tokens per critique, "
          f"{job.threads} threads, median of {repeats} interleaved runs; rule here: {runs['auto']['buffer_rule']}")


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
