"""What a LoRA adapter costs: its file size on a SmolLM2-135M-shaped base, and its time at scoring.

    python -m rprm_lite.bench.lora_speed [--shape tiny] [--rank 16] [--rounds 3] [--k 2] [--max-tokens 32]
                                         [--threads 1] [--out bench/results]

1. size: a random peft LoRA of rank `--rank` on every linear layer (q, k, v, o, gate, up, down) of a
   SmolLM2-135M-shaped Llama (30 layers, width 576, 9 heads, 3 KV heads, MLP 1536), converted by
   `rprm-lite convert` to f16 and f32 adapter GGUFs: the bytes written, against the count from the shapes
   (rank x (in + out) values per matrix). The adapter converter reads the base's config.json and tokenizer
   only, so no base weights are made.
2. speed: a random Llama of `--shape` and a random LoRA of `--rank` for it; the same solutions scored with
   and without the adapter (same seed, same settings, greedy so both decode the same number of tokens),
   alternating in rounds so that both see the same machine load; seconds per scored step of each and the
   ratio. llama.cpp adds each adapted matrix's B @ (A @ x) to the layer's output at every decode.
Never a test: tests never time anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rprm_lite.convert.architectures import expected_shapes, read_hparams
from rprm_lite.convert.converter import ConvertConfig, convert
from rprm_lite.convert.random_model import LORA_TARGETS, build_random_checkpoint, build_random_lora, model_config
from rprm_lite.convert.random_tokenizer import build_tokenizer
from rprm_lite.markdown import table
from rprm_lite.scoring import Scorer

from .report_files import DEFAULT_OUT, write_report
from .shapes import SHAPES, released_checkpoint

SIZE_SHAPE = "smollm2-135m"
QUESTIONS = [(f"A box holds {n} pens and another holds {n + 3}. How many pens in all?",
              [f"The first box holds {n} pens.", f"The second holds {n + 3} pens.", f"In all {2 * n + 3} pens."])
             for n in range(2, 6)]


def adapter_sizes(scratch: Path, rank: int) -> list[dict]:
    """Bytes of the f16 and f32 adapter GGUFs of a rank-`rank` LoRA on every linear layer of the SmolLM2 shape."""
    base = scratch / "smollm2-shaped"
    base.mkdir()
    tokenizer = build_tokenizer("small-bpe")
    config = model_config("llama", vocab_size=tokenizer.vocab_size, dtype="bfloat16", bos=tokenizer.bos_token_id,
                          eos=tokenizer.eos_token_id, **released_checkpoint(SIZE_SHAPE))
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    tokenizer.write(base)
    targets = tuple(f".{target}.weight" for target in LORA_TARGETS)
    values = sum(rank * sum(shape) for name, shape in expected_shapes(read_hparams(config)).items()
                 if name.endswith(targets))
    peft = build_random_lora(scratch / "smollm2-lora", base, rank=rank, alpha=2.0 * rank)
    rows = []
    for outtype, width in (("f16", 2), ("f32", 4)):
        out = scratch / f"smollm2-lora-{outtype}.gguf"
        convert(ConvertConfig(source=str(peft), base=str(base), output=out, outtype=outtype))
        rows.append({"outtype": outtype, "file_bytes": out.stat().st_size, "values": values,
                     "value_bytes": values * width})
    return rows


def scoring_speed(scratch: Path, args: argparse.Namespace) -> dict:
    base_dir = build_random_checkpoint(scratch / "base", arch="llama", tokenizer="small-bpe", seed=1,
                                       **SHAPES[args.shape])
    base, lora = scratch / "base.gguf", scratch / "lora.gguf"
    convert(ConvertConfig(source=str(base_dir), output=base, outtype="f16"))
    convert(ConvertConfig(source=str(build_random_lora(scratch / "peft", base_dir, rank=args.rank)), output=lora,
                          outtype="f16", base_gguf=base))
    settings = dict(k=args.k, max_tokens=args.max_tokens, temperature=0.0, all_steps=True, threads=args.threads)
    times: dict[str, list[float]] = {"base": [], "base + adapter": []}
    steps = 0
    with Scorer(base, **settings) as plain, Scorer(base, lora=lora, **settings) as adapted:
        for _ in range(args.rounds):
            for label, scorer in (("base", plain), ("base + adapter", adapted)):
                started = time.perf_counter()
                steps = sum(len(scorer.score(q, s).steps) for q, s in QUESTIONS)
                times[label].append((time.perf_counter() - started) / steps)
    per_step = {label: statistics.median(values) for label, values in times.items()}
    return {"shape": args.shape, "rank": args.rank, "k": args.k, "max_tokens": args.max_tokens,
            "threads": args.threads, "rounds": args.rounds, "steps_per_round": steps, "s_per_step": per_step,
            "ratio": per_step["base + adapter"] / per_step["base"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rprm-lora-bench-") as scratch:
        sizes = adapter_sizes(Path(scratch), args.rank)
        speed = scoring_speed(Path(scratch), args)
    report = {"machine": platform.processor() or platform.machine(), "size_shape": SIZE_SHAPE, "sizes": sizes,
              "speed": speed}
    size_rows = [(f"{SIZE_SHAPE}, r={args.rank}, every linear layer", row["outtype"], f"{row['values']:,}",
                  f"{row['file_bytes'] / 1e6:.2f} MB") for row in sizes]
    speed_rows = [(label, f"{seconds:.4f}") for label, seconds in speed["s_per_step"].items()]
    text = (table(("adapter", "type", "values", "file"), size_rows, "llrr") + "\n\n"
            + table((f"{args.shape}, K={args.k}, {args.max_tokens} tokens, {args.threads} thread(s)", "s per step"),
                    speed_rows, "lr")
            + f"\n\nadapter / base: {speed['ratio']:.2f}x\n")
    write_report(args.out, "lora_speed", report, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
