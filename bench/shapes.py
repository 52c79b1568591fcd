"""The model shapes the benchmarks build random-weight checkpoints of, in one table.

A shape is the sizes `rprm_lite.convert.random_model.build_random_checkpoint` takes. What a released model
sets beyond its sizes (tied embeddings, its context length) is a separate table, because not every benchmark
passes it: the converter benchmark does, so its checkpoints' config.json reads like the released one; the
scoring benchmarks keep build_random_checkpoint's defaults (tied, 4096 positions), as their models always had.
`bench/train_gpu.py` keeps its own copy of the 0.5B shape: it is copied to a GPU machine as one file.
"""

from __future__ import annotations

from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    "qwen2.5-1.5b": dict(n_layer=28, hidden=1536, n_head=12, n_kv_head=2, ffn=8960),
    "qwen2.5-0.5b": dict(n_layer=24, hidden=896, n_head=14, n_kv_head=2, ffn=4864),
    "smollm2-135m": dict(n_layer=30, hidden=576, n_head=9, n_kv_head=3, ffn=1536),  # Llama; the LoRA size report
    "tiny": dict(n_layer=2, hidden=64, n_head=4, n_kv_head=2, ffn=128),
}
RELEASED_CONFIG: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": dict(tied=True, max_position=32768),
    "qwen2.5-0.5b": dict(tied=True, max_position=32768),
    "smollm2-135m": dict(tied=True, max_position=8192),
}
SCORING_SHAPES = ("qwen2.5-0.5b", "tiny")  # the --shape choices of the scoring benchmarks (speed suite and kin)
# the converter benchmark builds Qwen2 checkpoints (SmolLM2's shape is a Llama one, for the LoRA benchmark)
CONVERT_SHAPES = ("qwen2.5-0.5b", "qwen2.5-1.5b", "tiny")


def released_checkpoint(shape: str) -> dict[str, Any]:
    """build_random_checkpoint's size arguments for `shape`, plus what the released model sets beyond them."""
    return {**SHAPES[shape], **RELEASED_CONFIG.get(shape, {})}
