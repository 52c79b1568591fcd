"""Crafted GGUF files for pre-flight tests: a valid 1-layer Qwen2 whose header values can be replaced.

`write_gguf(path, overrides={"qwen2.block_count": (UINT32, 0)}, drop={...})` writes the model with some
key/values replaced (any GGUF type) or left out, written by gguf's own writer, so only the values are
hostile, never the file structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

V = gguf.GGUFValueType
HIDDEN, FFN = 16, 32
PRINTABLE = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
BYTE_CHARS = {**{b: chr(b) for b in PRINTABLE},
              **{b: chr(256 + i) for i, b in enumerate(b for b in range(256) if b not in PRINTABLE)}}
TOKENS = [BYTE_CHARS[b] for b in range(256)] + ["ĠYes", "ĠNo", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

BASE_KV: dict[str, tuple[Any, Any]] = {
    "general.architecture": (V.STRING, "qwen2"),
    "general.alignment": (V.UINT32, 32),
    "qwen2.context_length": (V.UINT32, 512),
    "qwen2.embedding_length": (V.UINT32, HIDDEN),
    "qwen2.block_count": (V.UINT32, 1),
    "qwen2.feed_forward_length": (V.UINT32, FFN),
    "qwen2.attention.head_count": (V.UINT32, 2),
    "qwen2.attention.head_count_kv": (V.UINT32, 2),
    "qwen2.attention.layer_norm_rms_epsilon": (V.FLOAT32, 1e-6),
    "qwen2.rope.freq_base": (V.FLOAT32, 10000.0),
    "tokenizer.ggml.model": (V.STRING, "gpt2"),
    "tokenizer.ggml.pre": (V.STRING, "qwen2"),
    "tokenizer.ggml.eos_token_id": (V.UINT32, 258),
    "tokenizer.ggml.bos_token_id": (V.UINT32, 258),
    "tokenizer.ggml.add_bos_token": (V.BOOL, False),
    "rprm.k": (V.UINT32, 10),
    "rprm.temperature": (V.FLOAT32, 0.95),
    "rprm.threshold": (V.FLOAT32, 0.5),
}
HPARAM_KEYS = [key for key in BASE_KV if key.startswith(("qwen2.", "general.alignment", "rprm."))]


def tensor_shapes(n_layer: int = 1, hidden: int = HIDDEN, vocab: int = len(TOKENS)) -> dict[str, tuple[int, ...]]:
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    for layer in range(n_layer):
        blk = f"blk.{layer}."
        shapes |= {blk + "attn_norm.weight": (hidden,), blk + "ffn_norm.weight": (hidden,),
                   blk + "attn_q.weight": (hidden, hidden), blk + "attn_q.bias": (hidden,),
                   blk + "attn_k.weight": (hidden, hidden), blk + "attn_k.bias": (hidden,),
                   blk + "attn_v.weight": (hidden, hidden), blk + "attn_v.bias": (hidden,),
                   blk + "attn_output.weight": (hidden, hidden), blk + "ffn_gate.weight": (FFN, hidden),
                   blk + "ffn_up.weight": (FFN, hidden), blk + "ffn_down.weight": (hidden, FFN)}
    return shapes


def write_gguf(path: Path, *, overrides: dict[str, tuple[Any, Any]] | None = None, drop: set[str] = frozenset(),
               tokens: list[str] = TOKENS, shapes: dict[str, tuple[int, ...]] | None = None) -> Path:
    writer = gguf.GGUFWriter(str(path), arch=None)
    for key, (vtype, value) in {**BASE_KV, **(overrides or {})}.items():
        if key not in drop:
            sub = V.STRING if vtype == V.ARRAY and value and isinstance(value[0], str) else (
                V.UINT32 if vtype == V.ARRAY else None)
            writer.add_key_value(key, value, vtype, sub_type=sub)
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 256 + [1, 1, 3, 3, 3][: len(tokens) - 256] + [1] * max(0, len(tokens) - 261))
    writer.add_token_merges(["Ġ Y"])
    rng = np.random.default_rng(0)
    for name, shape in (shapes or tensor_shapes()).items():
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_adapter(path: Path, *, architecture: str, target: str, dims: tuple[int, int], rank: int,
                  types: tuple[gguf.GGMLQuantizationType, gguf.GGMLQuantizationType]) -> Path:
    """A LoRA adapter GGUF with one pair on the base tensor `target` (ggml `dims`: columns, rows), lora_a
    [columns, rank] and lora_b [rank, rows] of the ggml `types`, every byte zero (a zero update: a scale of
    0 in every quantized block), written by gguf's own writer whatever the types."""
    writer = gguf.GGUFWriter(str(path), arch=architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    columns, rows = dims
    for suffix, (ne0, ne1), kind in ((".lora_a", (columns, rank), types[0]), (".lora_b", (rank, rows), types[1])):
        block, type_size = gguf.GGML_QUANT_SIZES[kind]
        writer.add_tensor(target + suffix, np.zeros((ne1, ne0 // block * type_size), dtype=np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
