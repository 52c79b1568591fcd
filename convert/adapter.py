"""A peft LoRA folder -> a llama.cpp LoRA adapter GGUF, against the checkpoint it was trained on.

As llama.cpp's `convert_lora_to_gguf.py` writes it: `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and for each adapted matrix W (out x in) of the base, `<gguf name of W>.lora_a`
(peft's lora_A, r x in) and `.lora_b` (peft's lora_B, out x r), so that llama.cpp adds
scale * alpha / r * B @ A to W. Llama's q and k rows are permuted for llama.cpp's rope layout in the
base (`architectures.qk_head_count`); the rows of B @ A are the rows of B, so B's rows get the same
permutation and A stays. The adapter also carries the rprm.* metadata (its defaults override the
base's) and, with `--base-gguf`, that base's sha256, so the runtime refuses it on another base.

What llama.cpp cannot apply is refused before a byte is written: DoRA, LoRA biases, modules_to_save,
per-module alphas, embedding LoRA, and lm_head LoRA on a base whose lm_head is tied to the embeddings
(llama.cpp has no separate output matrix there).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf

from rprm_lite import metadata
from rprm_lite.errors import ModelFileError

from . import architectures as arch_table
from .checkpoint import convert_checkpoint
from .convert_config import ConvertConfig, ConvertResult, Progress, add_rprm_metadata, model_name
from .errors import CheckpointError, ConversionError
from .gguf_file import PlannedTensor, atomic_output, output_type_for, write_gguf
from .hub import resolve_source
from .json_files import read_json_file, short_repr
from .safetensors_io import TensorRef, read_header
from .tokenizer import read_vocabulary

if TYPE_CHECKING:
    from rprm_lite.model_file import ModelInfo

    from .verify import VerificationReport

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
HALVES = {".lora_A.weight": ".lora_a", ".lora_B.weight": ".lora_b"}  # peft suffix -> llama.cpp suffix


def is_peft_folder(folder: Path) -> bool:
    return (folder / PEFT_CONFIG).is_file()


@dataclass(frozen=True)
class AdapterPlan:
    folder: Path  # the peft folder
    base: Path  # the base checkpoint folder
    hparams: arch_table.HParams
    alpha: float  # as llama.cpp reads it: each pair is scaled by alpha / its rank
    tensors: list[PlannedTensor]
    matrices: dict[str, tuple[int, ...]]  # GGUF name of each adapted base matrix -> its shape (out, in)


def convert_adapter(config: ConvertConfig, folder: Path, report: Progress) -> ConvertResult:
    """The adapter GGUF of the peft folder `folder` (the `convert` of a LoRA): checked, written under a
    temporary name, checked by the runtime against --base-gguf, verified, then renamed."""
    from rprm_lite.model_file import inspect_model

    started = time.perf_counter()
    if config.verify:
        from .verify import check_verify_dependencies

        check_verify_dependencies(lora=True)
    if config.quant:
        raise ConversionError("--quant is for models; a LoRA adapter stays float: choose --outtype f32, f16 or bf16")
    plan = plan_adapter(folder, resolve_source(base_folder(folder, config.base)), config.outtype)
    base_info = inspect_model(config.base_gguf) if config.base_gguf is not None else None
    if base_info is not None:
        check_base_gguf(plan, base_info)
    report(f"LoRA for {plan.hparams.architecture.hf_name}: {len(plan.tensors) // 2} matrices, alpha "
           f"{plan.alpha:g} -> {config.outtype}")
    verification = None
    with atomic_output(config.output) as temporary:
        write_adapter(plan, config, temporary, report, base_info.sha256 if base_info else None)
        if base_info is not None:
            _check_against(temporary, base_info)
        if config.verify:
            verification = verify_adapter(plan, temporary, base_info, config, report)
    return ConvertResult(config.output, f"{plan.hparams.architecture.hf_name} LoRA adapter", config.outtype, None,
                         len(plan.tensors), config.output.stat().st_size, time.perf_counter() - started,
                         verification)


def check_base_gguf(plan: AdapterPlan, base: ModelInfo) -> None:
    """--base-gguf holds the checkpoint's architecture and, for every adapted matrix, its shape."""
    arch = gguf.MODEL_ARCH_NAMES[plan.hparams.architecture.gguf_arch]
    if base.architecture != arch:
        raise ConversionError(f"--base-gguf {base.path} is a {base.architecture!r} model, but the adapter's base "
                              f"checkpoint {plan.base} is {arch!r}; pass the GGUF of that checkpoint")
    for name, shape in plan.matrices.items():
        found = base.tensor_dims.get(name)
        if found != shape[::-1]:  # ggml order: columns first
            raise ConversionError(f"--base-gguf {base.path}: tensor {name} is {list(found or [])}, but the base "
                                  f"checkpoint {plan.base} makes it {list(shape[::-1])} (ggml order); pass the GGUF "
                                  "of that checkpoint")


def _check_against(adapter: Path, base: ModelInfo) -> None:
    """The runtime's own check of the adapter on the base GGUF it names."""
    from rprm_lite.adapter_file import inspect_adapter

    try:
        inspect_adapter(adapter, base)
    except ModelFileError as exc:
        raise ConversionError(f"--base-gguf {base.path} is not the base of this adapter: "
                              f"{str(exc).split(': ', 1)[-1]}") from None


def verify_adapter(plan: AdapterPlan, adapter: Path, base_info: ModelInfo | None, config: ConvertConfig,
                   report: Progress) -> VerificationReport:
    """Base GGUF + adapter in llama.cpp against base + peft merged in transformers. Without --base-gguf the
    base is converted to a temporary f32 GGUF for the check."""
    from .verify import verify_conversion

    with tempfile.TemporaryDirectory(prefix=".rprm-verify-", dir=config.output.parent) as scratch:
        if base_info is None:
            report("converting the base to a temporary f32 GGUF for the check")
            base_gguf, base_kind = Path(scratch) / "base.gguf", "f32"
            convert_checkpoint(ConvertConfig(source=str(plan.base), output=base_gguf, outtype="f32",
                                             threads=config.threads), plan.base, report=lambda message: None)
        else:
            base_gguf, base_kind = base_info.path, base_kind_of(base_info)
        report("verifying base + adapter against the merged model in transformers")
        return verify_conversion(plan.base, base_gguf, kind=looser(base_kind, config.outtype),
                                 threads=config.threads, lora=(adapter, plan.folder))


def base_kind_of(info: ModelInfo) -> str:
    """The base GGUF's type as the tolerance table names it (f32, f16, bf16, Q8_0, ...)."""
    kind = info.quantization.removeprefix("ALL_")
    return kind.lower() if kind in ("F32", "F16", "BF16") else kind


def looser(*kinds: str) -> str:
    """Of output types, the one whose verification tolerance is widest (base and adapter add their errors)."""
    from .verify import TOLERANCES

    known = [kind for kind in kinds if kind in TOLERANCES]
    if len(known) != len(kinds):
        raise ConversionError(f"no verification tolerance for {', '.join(k for k in kinds if k not in TOLERANCES)}")
    return max(known, key=lambda kind: TOLERANCES[kind].max_logit_diff)


def base_folder(folder: Path, base: str | None) -> str:
    """--base, else the base_model_name_or_path that peft recorded."""
    named = base or read_json_file(folder / PEFT_CONFIG).get("base_model_name_or_path")
    if not isinstance(named, str) or not named:
        raise ConversionError(f"{folder} is a peft LoRA folder: pass --base with the checkpoint folder it was "
                              f"trained on ({PEFT_CONFIG} names none)")
    return named


def plan_adapter(folder: Path, base: Path, outtype: str) -> AdapterPlan:
    """Check the peft folder against the base checkpoint and decide every adapter tensor."""
    settings = read_json_file(folder / PEFT_CONFIG)
    alpha = lora_alpha(settings, folder)
    hp = arch_table.read_hparams(arch_table.read_config(base))
    weights = folder / PEFT_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {PEFT_WEIGHTS}; save the adapter with save_pretrained() "
                              "(safetensors, the default)")
    pairs = _pairs(read_header(weights), weights)
    expected = arch_table.expected_shapes(hp)
    name_map = gguf.get_tensor_name_map(hp.architecture.gguf_arch, hp.n_layer)
    tensors, matrices = [], {}
    for name, (a, b) in sorted(pairs.items()):
        _check_pair(name, a, b, expected, hp)
        gguf_name = name_map.get_name(name, try_suffixes=(".weight",))
        kind = output_type_for(outtype, 2)
        tensors += [PlannedTensor(gguf_name + ".lora_a", a, kind),
                    PlannedTensor(gguf_name + ".lora_b", b, kind, arch_table.qk_head_count(hp, name))]
        matrices[gguf_name] = expected[name]
    return AdapterPlan(folder, base, hp, alpha, tensors, matrices)


def lora_alpha(settings: dict[str, Any], folder: Path) -> float:
    """adapter.lora.alpha for llama.cpp (scale alpha / r), refusing peft settings it cannot reproduce."""
    where = f"{folder / PEFT_CONFIG}"
    if settings.get("peft_type") != "LORA":
        raise ConversionError(f"{where}: peft_type is {short_repr(settings.get('peft_type'))}, expected 'LORA'")
    refused = [f"{key}={short_repr(settings.get(key))}" for key, fine in UNSUPPORTED.items()
               if settings.get(key) not in fine]
    if refused:
        raise ConversionError(f"{where}: {', '.join(refused)}, which a llama.cpp LoRA adapter cannot hold; "
                              "train with plain LoRA (no DoRA, bias='none', no modules_to_save or alpha_pattern)")
    alpha, rank = settings.get("lora_alpha"), settings.get("r")
    if not _positive_number(alpha) or not _positive_number(rank):
        raise ConversionError(f"{where}: expected positive lora_alpha and r, got {short_repr(alpha)} and "
                              f"{short_repr(rank)}")
    if settings.get("use_rslora"):
        if settings.get("rank_pattern"):
            raise ConversionError(f"{where}: use_rslora with a rank_pattern has no single llama.cpp alpha")
        return float(alpha) * math.sqrt(rank)  # rsLoRA scales by alpha / sqrt(r) = (alpha sqrt(r)) / r
    return float(alpha)


# adapter_config.json keys whose other values change the model in ways an adapter GGUF cannot carry
UNSUPPORTED: dict[str, tuple] = {
    "use_dora": (None, False), "bias": (None, "none"), "modules_to_save": (None, [], ()),
    "alpha_pattern": (None, {}), "fan_in_fan_out": (None, False),
}


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _pairs(refs: dict[str, TensorRef], weights: Path) -> dict[str, tuple[TensorRef, TensorRef]]:
    """base tensor name (transformers) -> (lora_A, lora_B)."""
    halves: dict[str, dict[str, TensorRef]] = {}
    for name, ref in refs.items():
        suffix = next((s for s in HALVES if name.endswith(s)), None)
        if suffix is None or not name.startswith(PEFT_PREFIX):
            embedding = "lora_embedding" in name or name.endswith(("embed_tokens.weight", "lm_head.weight"))
            hint = " (LoRA on the embeddings is not supported: target the linear layers)" if embedding else ""
            raise ConversionError(f"{weights}: unexpected tensor {name}; expected peft LoRA tensors named "
                                  f"{PEFT_PREFIX}<module>.lora_A.weight / .lora_B.weight{hint}")
        base_name = name[len(PEFT_PREFIX):-len(suffix)] + ".weight"
        halves.setdefault(base_name, {})[HALVES[suffix]] = ref
    if not halves:
        raise ConversionError(f"{weights}: holds no LoRA tensors")
    for name, pair in halves.items():
        if len(pair) != 2:
            raise CheckpointError(f"{weights}: {name} has only its {next(iter(pair))} half; expected lora_A and "
                                  "lora_B")
    return {name: (pair[".lora_a"], pair[".lora_b"]) for name, pair in halves.items()}


def _check_pair(name: str, a: TensorRef, b: TensorRef, expected: dict[str, tuple[int, ...]],
                hp: arch_table.HParams) -> None:
    shape = expected.get(name)
    if name == "lm_head.weight" and hp.tied:
        raise ConversionError("the adapter has LoRA on lm_head, but the base ties lm_head to the embeddings and "
                              "llama.cpp applies no LoRA there; train without lm_head in target_modules")
    if shape is None or len(shape) != 2 or name == arch_table.EMBEDDING:
        raise ConversionError(f"the adapter has LoRA on {name}, which the base {hp.architecture.hf_name} has no "
                              "linear layer of; is the adapter for another model?")
    out_features, in_features = shape
    rank = a.shape[0] if len(a.shape) == 2 else -1
    if a.shape != (rank, in_features) or b.shape != (out_features, rank):
        raise CheckpointError(f"{name} is {out_features} x {in_features} in the base, so lora_A must be "
                              f"[r, {in_features}] and lora_B [{out_features}, r]; got {list(a.shape)} and "
                              f"{list(b.shape)}: is the adapter for another base?")


def write_adapter(plan: AdapterPlan, config: ConvertConfig, path: Path, report: Progress,
                  base_sha256: str | None) -> None:
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[plan.hparams.architecture.gguf_arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, plan.alpha)
    writer.add_name(config.name or model_name(config.source, plan.folder))
    add_rprm_metadata(writer, read_vocabulary(plan.base, plan.hparams.vocab_size), config)
    if base_sha256 is not None:
        writer.add_string(metadata.BASE_SHA256, base_sha256)
    write_gguf(path, writer, plan.tensors)
    report(f"wrote {len(plan.tensors)} LoRA tensors")
