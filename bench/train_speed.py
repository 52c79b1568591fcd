"""Training throughput on CPU for a tiny random Qwen2 (for the record; never a test).

    python -m rprm_lite.bench.train_speed [--steps 8] [--critique-words 120] [--out bench/results]

Runs `rprm-lite train sft` and `train dpo` (TRL) for a few steps on R-PRM prompts with critiques of
a fixed length, on two tiny models (2 layers, hidden 64) that differ only in vocabulary: the
converter's small BPE (about 700 tokens) and the real Qwen2 one (151,936 rows). Beside them, a
plain PyTorch loop with the same loss on random tokens of the same length and vocabulary shows
what TRL's machinery costs on CPU. Tokens/s counts every token of every sequence (prompt and
critique), measured after the first two steps. Prints a markdown table, writes JSON and markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rprm_lite.bench.report_files import DEFAULT_OUT, write_report
from rprm_lite.markdown import table

SKIPPED_STEPS = 2  # warm-up: allocator growth, first-call overheads
SOLUTIONS = [
    {"id": f"s{i}", "question": f"A shop sells {a} pens a day. How many pens does it sell in {b} days?",
     "steps": [f"Each day it sells {a} pens.", f"In {b} days it sells {a} * {b} = {a * b} pens.",
               f"The answer is {a * b}."], "label": -1}
    for i, (a, b) in enumerate(((12, 7), (25, 4), (9, 9), (31, 3)))
]


def critique(words: int, verdict: str) -> str:
    analysis = " ".join(f"check{i % 10} the product and the data source" for i in range(words // 7))
    return f"{analysis}. Verification: Is the step correct (Yes/No)? {verdict}"


def write_data(folder: Path, words: int) -> tuple[Path, Path]:
    sft, pairs = [], []
    for item in SOLUTIONS:
        for number in range(1, len(item["steps"]) + 1):
            base = {"id": item["id"], "step": number, "label": "correct", "question": item["question"],
                    "steps": item["steps"]}
            sft.append({**base, "critique": critique(words, "Yes")})
            pairs.append({**base, "prompt_style": "chatml", "pairs": [[0, 1]],
                          "samples": [{"critique": critique(words, "Yes")}, {"critique": critique(words, "No")}]})
    for name, records in (("sft.jsonl", sft), ("pairs.jsonl", pairs)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder / "sft.jsonl", folder / "pairs.jsonl"


def steady_rate(log: list[dict]) -> tuple[float, float]:
    """(tokens/s, seconds/step) between the end of the warm-up steps and the last step."""
    steps = [entry for entry in log if "num_tokens" in entry and "loss" in entry]
    first, last = steps[SKIPPED_STEPS - 1], steps[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    return (last["num_tokens"] - first["num_tokens"]) / seconds, seconds / (last["step"] - first["step"])


def measure_trl(kind: str, model: Path, data: Path, out: Path, steps: int) -> dict:
    from rprm_lite.training.dpo import train_dpo
    from rprm_lite.training.sft import train_sft
    from rprm_lite.training.train_config import DPORunConfig, SFTRunConfig

    common = {"model": str(model), "data": str(data), "out": str(out), "batch_size": 2, "micro_batch_size": 2,
              "max_steps": steps, "learning_rate": 1e-4, "warmup_ratio": 0.0, "logging_steps": 1}
    if kind == "sft":
        summary = train_sft(SFTRunConfig(**common))
        sequences = 2
    else:
        summary = train_dpo(DPORunConfig(**common))
        sequences = 4  # two pairs: chosen and rejected each
    tokens_per_s, seconds = steady_rate(summary.log)
    return {"tokens_per_s": tokens_per_s, "seconds_per_step": seconds, "sequences_per_step": sequences}


def measure_plain(vocab: int, seq_len: int, steps: int) -> dict:
    """The SFT loss of the GPU check (completion half supervised), fp32 on CPU, no TRL."""
    import torch

    from rprm_lite.bench.train_gpu import TINY, build_model, optimizer_step, sft_loss

    model = build_model({**TINY, "vocab_size": vocab}, device="cpu", seed=0, gradient_checkpointing=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, vocab, (2, seq_len), generator=torch.Generator().manual_seed(0))
    for _ in range(SKIPPED_STEPS):
        optimizer_step(model, optimizer, sft_loss(model, ids, seq_len // 2))
    start = time.perf_counter()
    for _ in range(steps - SKIPPED_STEPS):
        optimizer_step(model, optimizer, sft_loss(model, ids, seq_len // 2))
    seconds = (time.perf_counter() - start) / (steps - SKIPPED_STEPS)
    return {"tokens_per_s": 2 * seq_len / seconds, "seconds_per_step": seconds, "sequences_per_step": 2}


def example_length(model: Path, data: Path) -> int:
    from transformers import AutoTokenizer

    from rprm_lite.training.data_files import read_critiques
    from rprm_lite.training.sft import sft_examples
    from rprm_lite.training.tokens import PromptTokenizer

    examples, _ = sft_examples(read_critiques(data), PromptTokenizer(AutoTokenizer.from_pretrained(model)),
                               prompt_style="chatml", max_length=1 << 20)
    return round(sum(len(e.ids) for e in examples) / len(examples))


def run(steps: int, words: int, scratch: Path) -> dict:
    import torch
    import transformers
    import trl

    from rprm_lite.convert.random_model import build_random_checkpoint

    sft_data, pairs_data = write_data(scratch, words)
    rows = []
    for tokenizer in ("small-bpe", "qwen2"):
        model = build_random_checkpoint(scratch / tokenizer, tokenizer=tokenizer, n_layer=2, hidden=64, n_head=4,
                                        n_kv_head=2, ffn=128, seed=0)
        vocab = json.loads((model / "config.json").read_text())["vocab_size"]
        length = example_length(model, sft_data)
        for kind, data in (("sft", sft_data), ("dpo", pairs_data)):
            result = measure_trl(kind, model, data, scratch / f"out-{tokenizer}-{kind}", steps)
            rows.append({"variant": f"TRL {kind}", "vocab": vocab, "tokens_per_sequence": length, **result})
        plain = measure_plain(vocab, length, steps)
        rows.append({"variant": "plain PyTorch sft", "vocab": vocab, "tokens_per_sequence": length, **plain})
    return {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "processor": platform.processor() or platform.machine()},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "trl": trl.__version__},
            "model": "Qwen2, 2 layers, hidden 64, 4 heads (2 KV), FFN 128, fp32", "steps": steps,
            "rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict]) -> dict:
    rate = {(r["variant"], r["vocab"]): r["tokens_per_s"] for r in rows}
    vocabs = sorted({r["vocab"] for r in rows})
    return {f"TRL sft / plain sft (vocab {v})": rate[("TRL sft", v)] / rate[("plain PyTorch sft", v)]
            for v in vocabs} | {
        f"TRL sft vocab {vocabs[0]} / vocab {vocabs[-1]}": rate[("TRL sft", vocabs[0])] / rate[("TRL sft", vocabs[-1])]}


def markdown(report: dict) -> str:
    rows = [(r["variant"], f"{r['vocab']:,}", r["tokens_per_sequence"], r["sequences_per_step"],
             f"{r['seconds_per_step']:.3f}", f"{r['tokens_per_s']:,.0f}") for r in report["rows"]]
    lines = [table(("variant", "vocab", "tokens/sequence", "sequences/step", "s/step", "tokens/s"), rows,
                   align="lrrrrr"), ""]
    lines += [f"- {name}: {value:.2f}x" for name, value in report["ratios"].items()]
    machine = report["machine"]
    lines += [f"- CPU: {machine['cpus']} cores ({machine['torch_threads']} torch threads), "
              f"torch {report['versions']['torch']}, trl {report['versions']['trl']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CPU training throughput of a tiny random Qwen2.")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per variant (>= 4)")
    parser.add_argument("--critique-words", type=int, default=120, help="length of each critique")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.steps < SKIPPED_STEPS + 2:
        parser.error(f"--steps must be at least {SKIPPED_STEPS + 2}")
    with tempfile.TemporaryDirectory(prefix="rprm-train-speed-") as scratch:
        report = run(args.steps, args.critique_words, Path(scratch))
    write_report(args.out, "train_speed", report, markdown(report))
    print(f"wrote {args.out / 'train_speed.json'} and {args.out / 'train_speed.md'}")


if __name__ == "__main__":
    main()
