"""The random-weight models the speed benchmarks score: one f32 checkpoint per shape, converted to each format.

Shapes come from `shapes.py`; every format is converted by our converter (quantized by llama.cpp) from the
same seed-0 checkpoint and cached in a folder, so the benchmarks and transformers run the same weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .shapes import SHAPES

# format name -> (converter outtype, llama.cpp quantization); every format comes from one f32 checkpoint
FORMATS = {"F32": ("f32", None), "F16": ("f16", None), "Q8_0": ("f32", "Q8_0"), "Q4_K_M": ("f32", "Q4_K_M")}


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


def kv_cache_mb(shape: str, n_cells: int) -> float:
    dims = SHAPES[shape]
    head_dim = dims["hidden"] // dims["n_head"]
    return n_cells * dims["n_layer"] * 2 * dims["n_kv_head"] * head_dim * 2 / 2**20  # f16 K and V

