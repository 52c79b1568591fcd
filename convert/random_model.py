"""Random-weight checkpoints and GGUFs for tests and demos (numpy only, no torch).

`build_random_checkpoint` writes a Hugging Face-format folder (config.json, tokenizer files,
safetensors, optionally sharded) that transformers loads like a real model; `build_random_gguf`
converts one with this package's converter and marks it "random weights: for tests and demos only".

    python -m rprm_lite.convert.random_model demo.gguf [--tokenizer qwen2|small-bpe] [--arch llama]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .architectures import expected_shapes, read_hparams
from .converter import RANDOM_WEIGHTS_DESCRIPTION, ConvertConfig, convert
from .errors import ConversionError
from .random_tokenizer import TOKENIZERS, build_tokenizer
from .safetensors_io import INDEX_FILE, TensorToWrite, f32_to_bf16_bits, write_safetensors

ARCHS = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
BLOCK_ELEMENTS = 16 * 1024 * 1024  # random values generated at a time


def build_random_checkpoint(
    out_dir: str | Path, *, arch: str = "qwen2", tokenizer: str = "qwen2", n_layer: int = 2, hidden: int = 64,
    n_head: int = 4, n_kv_head: int = 2, ffn: int = 128, tied: bool = True, shards: int = 1,
    dtype: str = "float32", seed: int = 0, max_position: int = 4096, qwen2_vocab: str | Path | None = None,
) -> Path:
    """Write a random-weight Hugging Face checkpoint folder and return its path.

    arch: "qwen2" (Qwen2ForCausalLM) or "llama" (LlamaForCausalLM). tokenizer: "qwen2" (the real
    Qwen2.5 tokenizer, rebuilt from the shared ggml-vocab-qwen2.gguf or `qwen2_vocab`) or "small-bpe"
    (trained here, needs no file). dtype: float32, float16 or bfloat16. Weights are scaled so that
    logits spread over a few units, which makes logit comparisons meaningful.
    """
    if arch not in ARCHS:
        raise ConversionError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if shards < 1:
        raise ConversionError(f"shards must be at least 1, got {shards}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_files = build_tokenizer(tokenizer, qwen2_vocab=Path(qwen2_vocab) if qwen2_vocab else None)
    config = model_config(arch, vocab_size=tokenizer_files.vocab_size, n_layer=n_layer, hidden=hidden,
                          n_head=n_head, n_kv_head=n_kv_head, ffn=ffn, tied=tied, dtype=dtype,
                          max_position=max_position, bos=tokenizer_files.bos_token_id,
                          eos=tokenizer_files.eos_token_id)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tokenizer_files.write(folder)
    tensors = [_random_tensor(name, shape, DTYPES[dtype], seed, hidden)
               for name, shape in expected_shapes(read_hparams(config)).items()]
    _write_shards(folder, tensors, shards)
    return folder


def model_config(arch: str, *, vocab_size: int, n_layer: int, hidden: int, n_head: int, n_kv_head: int,
                 ffn: int, tied: bool, dtype: str, max_position: int, bos: int, eos: int) -> dict[str, Any]:
    """config.json as transformers writes it for this architecture."""
    config: dict[str, Any] = {
        "architectures": [ARCHS[arch]], "model_type": arch, "attention_dropout": 0.0, "bos_token_id": bos,
        "eos_token_id": eos, "hidden_act": "silu", "hidden_size": hidden, "initializer_range": 0.02,
        "intermediate_size": ffn, "max_position_embeddings": max_position, "num_attention_heads": n_head,
        "num_hidden_layers": n_layer, "num_key_value_heads": n_kv_head, "tie_word_embeddings": tied,
        "torch_dtype": dtype, "use_cache": True, "vocab_size": vocab_size,
    }
    if arch == "qwen2":
        config |= {"rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "use_sliding_window": False,
                   "sliding_window": None, "max_window_layers": n_layer}
    else:
        config |= {"rms_norm_eps": 1e-5, "rope_theta": 500000.0, "attention_bias": False, "mlp_bias": False,
                   "head_dim": hidden // n_head, "pretraining_tp": 1, "rope_scaling": None}
    return config


def _random_tensor(name: str, shape: tuple[int, ...], dtype: str, seed: int, hidden: int) -> TensorToWrite:
    """Seeded per tensor name, so a tensor's values do not depend on sharding or order."""
    if name.endswith("norm.weight"):
        center, scale = 1.0, 0.1
    elif name.endswith(".bias"):
        center, scale = 0.0, 0.1
    elif name in ("model.embed_tokens.weight", "lm_head.weight"):
        center, scale = 0.0, 2.0 / np.sqrt(hidden)  # logits of a few units, tied or not
    else:
        center, scale = 0.0, 1.0 / np.sqrt(shape[1])  # keeps activations near unit size

    def blocks() -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        row_elements = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else shape[0]
        n_rows = shape[0] if len(shape) > 1 else 1
        rows_per_block = max(1, BLOCK_ELEMENTS // row_elements)
        for start in range(0, n_rows, rows_per_block):
            count = min(rows_per_block, n_rows - start) * row_elements
            values = rng.standard_normal(count, dtype=np.float32) * np.float32(scale) + np.float32(center)
            yield _stored(values, dtype)

    return TensorToWrite(name, dtype, shape, blocks)


def _stored(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return f32_to_bf16_bits(values)
    return values.astype(np.float16) if dtype == "F16" else values


def _write_shards(folder: Path, tensors: list[TensorToWrite], shards: int) -> None:
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors)
        return
    if shards > len(tensors):
        raise ConversionError(f"shards must be at most the number of tensors ({len(tensors)}), got {shards}")
    total = sum(t.nbytes for t in tensors)
    groups: list[list[TensorToWrite]] = [[]]
    group_bytes = 0
    for position, tensor in enumerate(tensors):
        shards_left, tensors_left = shards - len(groups), len(tensors) - position
        # start the next shard when this one is full, or when every later shard needs a tensor
        if groups[-1] and shards_left and (group_bytes >= total / shards or tensors_left <= shards_left):
            groups.append([])
            group_bytes = 0
        groups[-1].append(tensor)
        group_bytes += tensor.nbytes
    weight_map = {}
    for number, group in enumerate(groups, start=1):
        file_name = f"model-{number:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / file_name, group)
        weight_map |= {tensor.name: file_name for tensor in group}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2), encoding="utf-8")


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_random_lora(out_dir: str | Path, base: str | Path, *, rank: int = 4, alpha: float = 8.0, seed: int = 0,
                      targets: tuple[str, ...] = LORA_TARGETS) -> Path:
    """Write a random peft LoRA folder (adapter_config.json, adapter_model.safetensors) for the checkpoint in
    `base`, as peft's save_pretrained does, with B non-zero (unlike peft's own init), so the adapter changes
    the model's output. No torch needed; returns the folder."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = expected_shapes(read_hparams(json.loads((Path(base) / "config.json").read_text(encoding="utf-8"))))
    tensors = []
    for name, (out_features, in_features) in ((n, s) for n, s in shapes.items() if n.endswith(
            tuple(f".{target}.weight" for target in targets))):
        module = "base_model.model." + name.removesuffix(".weight")
        tensors += [_random_tensor(f"{module}.lora_A.weight", (rank, in_features), "F32", seed, in_features),
                    _random_tensor(f"{module}.lora_B.weight", (out_features, rank), "F32", seed, rank)]
    write_safetensors(folder / "adapter_model.safetensors", tensors)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
              "bias": "none", "use_dora": False, "use_rslora": False, "fan_in_fan_out": False,
              "target_modules": list(targets), "base_model_name_or_path": str(base), "modules_to_save": None}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def build_random_gguf(
    out_path: str | Path, *, outtype: str = "f32", quant: str | None = None, force: bool = False,
    prompt_style: str = "r-prm-eval", arch: str = "qwen2", tokenizer: str = "qwen2", n_layer: int = 2,
    hidden: int = 64, n_head: int = 4, n_kv_head: int = 2, ffn: int = 128, tied: bool = True, shards: int = 1,
    dtype: str = "float32", seed: int = 0, max_position: int = 4096, qwen2_vocab: str | Path | None = None,
) -> Path:
    """Build a random checkpoint in a temporary folder and convert it; returns `out_path`.

    The GGUF carries rprm.description = "random weights: for tests and demos only". Its scores are
    meaningless; it exists so tests and first-run demos have a real model file to load.
    """
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="rprm-random-") as scratch:
        folder = build_random_checkpoint(
            Path(scratch) / f"random-{arch}-{tokenizer}", arch=arch, tokenizer=tokenizer, n_layer=n_layer,
            hidden=hidden, n_head=n_head, n_kv_head=n_kv_head, ffn=ffn, tied=tied, shards=shards, dtype=dtype,
            seed=seed, max_position=max_position, qwen2_vocab=qwen2_vocab)
        convert(ConvertConfig(source=str(folder), output=out_path, outtype=outtype, quant=quant, force=force,
                              prompt_style=prompt_style, description=RANDOM_WEIGHTS_DESCRIPTION))
    return out_path


def main(argv: list[str] | None = None) -> int:
    from rprm_lite.cli import run_program

    parser = argparse.ArgumentParser(
        prog="python -m rprm_lite.convert.random_model",
        description="Build a tiny random-weight R-PRM GGUF (for tests and demos only).")
    parser.add_argument("output", type=Path)
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="qwen2")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="qwen2")
    parser.add_argument("--outtype", default="f32")
    parser.add_argument("--quant", default=None)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    def build() -> int:
        path = build_random_gguf(args.output, outtype=args.outtype, quant=args.quant, force=args.force,
                                 arch=args.arch, tokenizer=args.tokenizer, n_layer=args.layers,
                                 hidden=args.hidden, seed=args.seed)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {RANDOM_WEIGHTS_DESCRIPTION})")
        return 0

    return run_program(build)


if __name__ == "__main__":
    sys.exit(main())
