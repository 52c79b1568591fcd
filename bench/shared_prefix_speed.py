"""SFT throughput with and without shared-prefix training, on the demo recipe's own model and data.

    python -m rprm_lite.bench.shared_prefix_speed --recipe build/recipe [--steps 8] [--out bench/results]

Trains the recipe's starting checkpoint (`base/`; `drill/` in a folder of the old from-scratch recipe) on its
balanced SFT data (`sft-data.jsonl`, released R-PRM prompt) for a few optimizer steps of 32 examples in four
variants, one after the other in one run: the plain forward (micro-batches of 8, as the landed recipe ran) and
the shared-prefix forward (micro-batches of 32), each in fp32 and in bf16 autocast. Reports examples/s and
optimizer steps per minute after the first two steps, and each variant's ratio to the plain fp32 one.
Never a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.markdown import table

SKIPPED_STEPS = 2
BATCH = 32
VARIANTS = (("plain", 8, False, "fp32"), ("shared prefix", 32, True, "fp32"),
            ("plain", 8, False, "bf16"), ("shared prefix", 32, True, "bf16"))


def measure(model: Path, data: Path, out: Path, *, micro: int, shared: bool, precision: str, steps: int) -> dict:
    from rprm_lite.training.sft import train_sft
    from rprm_lite.training.train_config import SFTRunConfig

    summary = train_sft(SFTRunConfig(model=str(model), data=str(data), out=str(out), prompt_style="r-prm-eval",
                                     learning_rate=1e-4, batch_size=BATCH, micro_batch_size=micro, max_steps=steps,
                                     warmup_ratio=0.0, max_length=1024, logging_steps=1, precision=precision,
                                     shared_prefix=shared))
    logged = [entry for entry in summary.log if "loss" in entry]
    first, last = logged[SKIPPED_STEPS - 1], logged[-1]
    seconds = (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])
    return {"seconds_per_step": seconds, "examples_per_s": BATCH / seconds, "steps_per_minute": 60 / seconds}


def run(recipe: Path, steps: int, scratch: Path) -> dict:
    import torch

    model = recipe / "drill" if (recipe / "drill" / "config.json").is_file() else recipe / "base"
    data = recipe / "sft-data.jsonl"
    rows = []
    for name, micro, shared, precision in VARIANTS:
        result = measure(model, data, scratch / f"{name}-{precision}".replace(" ", "-"), micro=micro, shared=shared,
                         precision=precision, steps=steps)
        rows.append({"variant": name, "micro_batch": micro, "precision": precision, **result})
    base = rows[0]["examples_per_s"]
    for row in rows:
        row["vs_plain_fp32"] = row["examples_per_s"] / base
    return {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "processor": platform.processor() or platform.machine()},
            "model": str(model), "data": str(data), "batch": BATCH, "steps": steps, "rows": rows}


def markdown(report: dict) -> str:
    rows = [(r["variant"], r["micro_batch"], r["precision"], f"{r['seconds_per_step']:.2f}",
             f"{r['examples_per_s']:.1f}", f"{r['steps_per_minute']:.1f}", f"{r['vs_plain_fp32']:.2f}x")
            for r in report["rows"]]
    lines = [table(("forward", "micro-batch", "precision", "s/step", "examples/s", "steps/min", "vs plain fp32"),
                   rows, align="lrlrrrr")]
    machine = report["machine"]
    lines += ["", f"- {report['batch']} examples per optimizer step, {report['steps']} steps per variant "
              f"(the first {SKIPPED_STEPS} not timed); CPU: {machine['cpus']} cores, {machine['torch_threads']} "
              "torch threads"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SFT throughput with and without shared-prefix training.")
    parser.add_argument("--recipe", type=Path, default=Path("build/recipe"), help="a recipe folder past its seed stage")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per variant (>= 4)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.steps < SKIPPED_STEPS + 2:
        parser.error(f"--steps must be at least {SKIPPED_STEPS + 2}")
    if not (args.recipe / "sft-data.jsonl").is_file():
        parser.error(f"{args.recipe} has no sft-data.jsonl; run the recipe (at least its seed stage) first")
    with tempfile.TemporaryDirectory(prefix="rprm-prefix-speed-") as scratch:
        report = run(args.recipe, args.steps, Path(scratch))
    write_report(args.out, "shared_prefix_speed", report, markdown(report))


if __name__ == "__main__":
    main()
