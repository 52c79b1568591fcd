"""LoRA adapters (GGUF, `general.type = adapter`): naming them, and checking them against their base.

An adapter is checked before llama.cpp sees it, as a model file is (`model_file.py`): GGUF header and
extents, `adapter.type = lora`, the base's architecture, every `<name>.lora_a` / `<name>.lora_b` pair
against the base tensor `<name>` (llama.cpp's own shape rule: `lora_a` is in x rank, `lora_b` rank x
out, in ggml order), every half's tensor type (`COMPUTABLE_TYPE_NAMES`), and, when the adapter records one, the
sha256 of the base it was converted against. Its `rprm.*` metadata goes on top of the base's
(`ModelInfo.settings_metadata`).

llama.cpp's loader (src/llama-adapter.cpp) takes a LoRA tensor of any type it can read, and its graph
(`build_lora_mm` in src/llama-graph.cpp) multiplies each half with `ggml_mul_mat(half, activations)`. The
CPU backend computes that through the half's type's `vec_dot` (ggml-cpu.c `type_traits_cpu`), and a type
without one (the integer types, F64, and Q8_1/Q8_K, which exist only as the other operand) is a call through
a null pointer: the process dies at the first decode. So a half must be of a type that has one.

On the command line an adapter is `PATH` or `PATH:SCALE` (scale 1 when left out): one option per
adapter keeps each scale beside its file, so two repeated lists can never pair up wrongly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, TypeGuard

from rprm_lite import metadata
from rprm_lite.errors import InputError, ModelFileError
from rprm_lite.hparams import TensorInfo
from rprm_lite.model_file import Adapter, ModelInfo, check_rprm_metadata, read_gguf_header, rprm_fields

GENERAL_TYPE = "general.type"
ADAPTER_TYPE = "adapter.type"
LORA_ALPHA = "adapter.lora.alpha"
LORA_A, LORA_B = ".lora_a", ".lora_b"
IGNORED_SUFFIX = "_norm.weight"  # llama.cpp skips norm vectors in an adapter (mergekit-extract-lora writes them)
# the ggml types whose CPU type traits have a vec_dot (llama.cpp's ggml/src/ggml-cpu/ggml-cpu.c), by gguf-py's
# names: the only ones ggml_mul_mat computes with. A name this gguf-py lacks is a type its reader refuses anyway.
COMPUTABLE_TYPE_NAMES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
                         "Q5_K", "Q6_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                         "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "Q1_0", "Q2_0")

LoraArg = str | Path | tuple[str | Path, float]


def parse_lora(text: str) -> tuple[Path, float]:
    """`PATH` or `PATH:SCALE`; a name that exists as a file is a path even if it holds a colon."""
    path, colon, scale = text.rpartition(":")
    if not colon or Path(text).exists():
        return Path(text), 1.0
    try:
        value = float(scale)
    except ValueError:
        return Path(text), 1.0  # C:\\adapter.gguf, or a missing file whose name holds a colon
    if not math.isfinite(value):
        raise InputError(f"--lora {text}: the scale after ':' must be a finite number, got {scale!r}")
    return Path(path), value


def lora_specs(lora: LoraArg | Sequence[LoraArg] | None) -> list[tuple[Path, float]]:
    """(path, scale) of each adapter, from what `Scorer(lora=...)` and `--lora` accept: a path, "PATH:SCALE",
    a (path, scale) pair, or a list of those."""
    if lora is None:
        return []
    # each item is checked: a Python caller may pass anything
    items: Sequence[object] = [lora] if isinstance(lora, (str, Path)) or _is_pair(lora) else lora
    specs = []
    for item in items:
        if isinstance(item, Path):
            specs.append((item, 1.0))
        elif isinstance(item, str):
            specs.append(parse_lora(item))
        elif _is_pair(item):
            specs.append((Path(item[0]), _scale(item[1])))
        else:
            raise InputError(f"lora: expected a path, 'PATH:SCALE' or a (path, scale) pair, got {item!r}")
    return specs


def _is_pair(item: object) -> TypeGuard[tuple[str | Path, float]]:
    return (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str, Path))
            and isinstance(item[1], (int, float)) and not isinstance(item[1], bool))


def _scale(value: float) -> float:
    if not math.isfinite(value):
        raise InputError(f"lora: the scale must be a finite number, got {value!r}")
    return float(value)


def load_model_info(model: str | Path | None, lora: LoraArg | Sequence[LoraArg] | None = None) -> ModelInfo:
    """The model `--model`/$RPRM_MODEL names, or the bundled demo (its base with the bundled adapter first),
    checked, with the adapters of `lora` on top."""
    from rprm_lite.model_file import inspect_model, resolve_model

    path, bundled = resolve_model(model)
    return with_adapters(inspect_model(path), [*bundled, *lora_specs(lora)])


def with_adapters(base: ModelInfo, lora: LoraArg | Sequence[LoraArg] | None) -> ModelInfo:
    """`base` with the adapters of `lora` checked and attached (`base` itself when there are none)."""
    adapters = tuple(inspect_adapter(path, base, scale=scale) for path, scale in lora_specs(lora))
    if not adapters:
        return base
    attached = replace(base, adapters=base.adapters + adapters)
    if "sha256" in vars(base):  # the base's hash, if a recorded base identity made us compute it, is not redone
        vars(attached)["sha256"] = base.sha256
    return attached


def inspect_adapter(path: str | Path, base: ModelInfo, *, scale: float = 1.0) -> Adapter:
    """Check a LoRA adapter GGUF against the base model it is to be applied to; problems are ModelFileError."""
    path = Path(path)
    size, _, header = read_gguf_header(path, "LoRA adapter")
    fields = header.fields
    _check_kind(path, fields, base)
    rprm = rprm_fields(fields)
    check_rprm_metadata(path, rprm)
    _check_base_identity(path, rprm.get(metadata.BASE_SHA256), base)
    pairs = _pairs(path, header.tensors)
    ranks = sorted({_check_pair(path, name, a, b, base) for name, (a, b) in pairs.items()})
    alpha = fields.get(LORA_ALPHA, 0.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ModelFileError(f"{path}: {LORA_ALPHA} is {alpha!r}, expected a finite number")
    return Adapter(path=path, scale=scale, size=size, alpha=float(alpha), ranks=tuple(ranks),
                   n_pairs=len(pairs), rprm=rprm)


def _check_kind(path: Path, fields: dict[str, Any], base: ModelInfo) -> None:
    kind = fields.get(GENERAL_TYPE)
    if kind != "adapter":
        raise ModelFileError(f"{path}: not a LoRA adapter ({GENERAL_TYPE} is {kind!r}, expected 'adapter'); "
                             "pass models with --model and adapters made by `rprm-lite convert` with --lora")
    if fields.get(ADAPTER_TYPE) != "lora":
        raise ModelFileError(f"{path}: {ADAPTER_TYPE} is {fields.get(ADAPTER_TYPE)!r}, expected 'lora'")
    arch = fields.get("general.architecture")
    if arch != base.architecture:
        raise ModelFileError(f"{path}: the adapter is for a {arch!r} model, but the base {base.path.name} is "
                             f"{base.architecture!r}; use the base model it was made for")


def _pairs(path: Path, tensors: Iterable[TensorInfo]) -> dict[str, tuple[TensorInfo, TensorInfo]]:
    """base tensor name -> (lora_a, lora_b) tensor infos; every pair complete."""
    halves: dict[str, dict[str, TensorInfo]] = {}
    for tensor in tensors:
        name = tensor.name
        if name.endswith(IGNORED_SUFFIX):
            continue
        if not name.endswith((LORA_A, LORA_B)):
            raise ModelFileError(f"{path}: tensor {name} is not a LoRA tensor (expected names ending in "
                                 f"{LORA_A} or {LORA_B})")
        halves.setdefault(name[:-len(LORA_A)], {})[name[-len(LORA_A):]] = tensor
    if not halves:
        raise ModelFileError(f"{path}: the adapter holds no {LORA_A}/{LORA_B} tensors")
    for name, pair in halves.items():
        if len(pair) != 2:
            missing = LORA_B if LORA_A in pair else LORA_A
            raise ModelFileError(f"{path}: tensor {name}{missing} is missing; each LoRA tensor needs both halves")
    return {name: (pair[LORA_A], pair[LORA_B]) for name, pair in halves.items()}


def _check_pair(path: Path, name: str, a: TensorInfo, b: TensorInfo, base: ModelInfo) -> int:
    """The rank of one pair, after checking it fits the base tensor (llama.cpp's rule)."""
    dims = base.tensor_dims.get(name)
    if dims is None:
        raise ModelFileError(f"{path}: tensor {name} of the adapter is not in the base {base.path.name}; "
                             "is this adapter for another model?")
    if len(dims) != 2 or len(a.dims) != 2 or len(b.dims) != 2:
        raise ModelFileError(f"{path}: tensor {name}: expected 2-D LoRA halves of a matrix, got base "
                             f"{list(dims)}, lora_a {list(a.dims)}, lora_b {list(b.dims)}")
    for half, tensor in ((LORA_A, a), (LORA_B, b)):
        if tensor.type not in computable_types():
            raise ModelFileError(f"{path}: tensor {name}{half} is of type {type_name(tensor.type)}, which llama.cpp "
                                 "cannot multiply with (it would crash at the first decode); expected one of "
                                 "F32, F16, BF16 or a quantized type such as Q8_0: convert the adapter again")
    columns, rows = dims
    rank = a.dims[1]
    if a.dims != (columns, rank) or b.dims != (rank, rows):
        raise ModelFileError(f"{path}: tensor {name} of the base {base.path.name} is {columns} x {rows} (ggml "
                             f"order), so lora_a must be [{columns}, r] and lora_b [r, {rows}]; got "
                             f"{list(a.dims)} and {list(b.dims)}: this adapter is for another base model")
    return rank


@cache
def computable_types() -> frozenset[int]:
    """The ggml type ids of COMPUTABLE_TYPE_NAMES that this gguf-py knows."""
    from gguf import GGMLQuantizationType

    return frozenset(GGMLQuantizationType[name].value for name in COMPUTABLE_TYPE_NAMES
                     if name in GGMLQuantizationType.__members__)


def type_name(kind: int) -> str:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return f"{kind} (unknown)"


def _check_base_identity(path: Path, recorded: str | None, base: ModelInfo) -> None:
    if recorded is not None and recorded != base.sha256:
        raise ModelFileError(f"{path}: the adapter was converted against a base with sha256 {recorded[:12]}..., "
                             f"but {base.path.name} has sha256 {base.sha256[:12]}...; use the base it was made "
                             "for (or convert the adapter again with --base-gguf naming this base)")
