"""The architectures the converter knows: a table row each, plus hyper-parameters read from config.json.

Adding an architecture means adding a row to `ARCHITECTURES` (its gguf arch, how rope is laid out,
which biases it has, transformers' defaults for keys a config may omit). Tensor names are mapped
by gguf-py's own `get_tensor_name_map`, so no name table lives here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from .errors import CheckpointError, ConversionError
from .json_files import object_or_empty, read_json_file, short_repr

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Architecture:
    hf_name: str  # config.json "architectures"[0]
    gguf_arch: gguf.MODEL_ARCH
    qkv_bias: bool  # q/k/v projections always carry a bias (Qwen2)
    # llama.cpp's LLAMA graph uses interleaved rope pairs while transformers rotates halves, so q and k
    # rows are permuted on the way in, exactly as llama.cpp's reference converter does
    permute_qk: bool
    write_rope_dimension: bool  # the reference converter writes rope.dimension_count and vocab_size
    # the reference converter copies tokenizer_config.json's add_prefix_space for this architecture
    write_add_space_prefix: bool
    defaults: dict[str, Any] = field(default_factory=dict)  # transformers' config defaults


ARCHITECTURES: dict[str, Architecture] = {
    arch.hf_name: arch
    for arch in (
        Architecture("Qwen2ForCausalLM", gguf.MODEL_ARCH.QWEN2, qkv_bias=True, permute_qk=False,
                     write_rope_dimension=False, write_add_space_prefix=False,
                     defaults={"rope_theta": 10000.0, "tie_word_embeddings": False, "rms_norm_eps": 1e-6}),
        Architecture("LlamaForCausalLM", gguf.MODEL_ARCH.LLAMA, qkv_bias=False, permute_qk=True,
                     write_rope_dimension=True, write_add_space_prefix=True,
                     defaults={"rope_theta": 10000.0, "tie_word_embeddings": False, "rms_norm_eps": 1e-6}),
    )
}


@dataclass(frozen=True)
class HParams:
    """The hyper-parameters that shape the GGUF, all read from config.json."""

    architecture: Architecture
    vocab_size: int
    hidden: int
    n_layer: int
    n_head: int
    n_kv_head: int
    head_dim: int
    ffn: int
    context_length: int
    rms_eps: float
    rope_theta: float
    tied: bool
    rope_scaling: dict[str, Any] | None
    config: dict[str, Any] = field(repr=False, compare=False)

    @property
    def q_dim(self) -> int:
        return self.n_head * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_head * self.head_dim


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_FILE}; expected a Hugging Face checkpoint folder "
                              "(config.json, tokenizer.json, *.safetensors)")
    return read_json_file(path)


def find_architecture(config: dict[str, Any]) -> Architecture:
    names = config.get("architectures") or []
    supported = ", ".join(ARCHITECTURES)
    if not isinstance(names, list) or not names:
        raise CheckpointError(f"config.json has no 'architectures' list; expected one of: {supported}")
    for name in names:
        if isinstance(name, str) and name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise ConversionError(f"architecture {', '.join(map(str, names))[:200]} is not supported; "
                          f"supported architectures: {supported}")


# GGUF stores these sizes as uint32 and llama.cpp reads several of them into int32
MAX_CONFIG_INT = 2**31 - 1


def config_value(config: dict[str, Any], key: str, kind: type, default: Any = None, *,
                 where: str = CONFIG_FILE) -> Any:
    """config[key] checked to be a positive integer up to MAX_CONFIG_INT, a positive finite number, or a
    boolean (`kind` int, float or bool); `where` names the object in error messages."""
    raw = config.get(key, default)
    if raw is None:
        raise CheckpointError(f"{where} lacks '{key}', which the converter needs")
    if kind is bool:
        if not isinstance(raw, bool):
            raise CheckpointError(f"{where}: '{key}' must be true or false, got {short_repr(raw)}")
        return raw
    is_number = isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if kind is int and not (is_number and isinstance(raw, int) and 0 < raw <= MAX_CONFIG_INT):
        raise CheckpointError(f"{where}: '{key}' must be a positive integer of at most {MAX_CONFIG_INT}, "
                              f"got {short_repr(raw)}")
    if kind is float and not (is_number and math.isfinite(raw) and raw > 0):
        raise CheckpointError(f"{where}: '{key}' must be a positive finite number, got {short_repr(raw)}")
    return kind(raw)


def read_hparams(config: dict[str, Any]) -> HParams:
    """Hyper-parameters from config.json; rejects settings the GGUF could not reproduce."""
    arch = find_architecture(config)

    def value(key: str, kind: type = int) -> Any:
        return config_value(config, key, kind, arch.defaults.get(key))

    _reject_unsupported(config, arch)
    hidden, n_head = value("hidden_size"), value("num_attention_heads")
    n_kv_head = value("num_key_value_heads") if "num_key_value_heads" in config else n_head
    head_dim = value("head_dim") if config.get("head_dim") is not None else hidden // n_head
    if n_head % n_kv_head:
        raise CheckpointError(f"config.json: num_attention_heads ({n_head}) must be a multiple of "
                              f"num_key_value_heads ({n_kv_head})")
    if head_dim * n_head != hidden and config.get("head_dim") is None:
        raise CheckpointError(f"config.json: hidden_size ({hidden}) is not divisible by "
                              f"num_attention_heads ({n_head}) and no head_dim is given")
    return HParams(
        architecture=arch, vocab_size=value("vocab_size"), hidden=hidden, n_layer=value("num_hidden_layers"),
        n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim, ffn=value("intermediate_size"),
        context_length=value("max_position_embeddings"), rms_eps=value("rms_norm_eps", float),
        rope_theta=_rope_theta(config, arch), tied=value("tie_word_embeddings", bool),
        rope_scaling=_rope_scaling(config), config=config,
    )


def _rope_theta(config: dict[str, Any], arch: Architecture) -> float:
    # transformers >= 5 saves rope settings under "rope_parameters"; older versions at top level
    parameters = object_or_empty(config.get("rope_parameters"), "config.json: rope_parameters")
    source = parameters if "rope_theta" in parameters else config
    return config_value(source, "rope_theta", float, arch.defaults["rope_theta"])


ROPE_TYPES = ("default", "linear", "yarn")


def _rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    scaling = (object_or_empty(config.get("rope_scaling"), "config.json: rope_scaling")
               or object_or_empty(config.get("rope_parameters"), "config.json: rope_parameters"))
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if not isinstance(kind, str) or kind not in ROPE_TYPES:
        raise ConversionError(f"config.json: rope scaling type {short_repr(kind)} is not supported; "
                              f"supported: {', '.join(ROPE_TYPES)}")
    if kind == "default":
        return None
    where = "config.json: rope scaling"
    checked = {"rope_type": kind, "factor": config_value(scaling, "factor", float, where=where)}
    if kind == "yarn":
        checked["original_max_position_embeddings"] = config_value(
            scaling, "original_max_position_embeddings", int, where=where)
    return checked


def _reject_unsupported(config: dict[str, Any], arch: Architecture) -> None:
    """Settings transformers honours but this converter does not carry into the GGUF."""
    problems = []
    if config.get("attention_bias") and not arch.qkv_bias:
        problems.append("attention_bias=true")
    if config.get("mlp_bias"):
        problems.append("mlp_bias=true")
    if config.get("use_sliding_window"):
        problems.append("use_sliding_window=true")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={config['hidden_act']!r} (expected 'silu')")
    if problems:
        raise ConversionError(f"config.json sets {', '.join(problems)}, which the {arch.hf_name} "
                              "converter does not support")


def expected_shapes(hp: HParams) -> dict[str, tuple[int, ...]]:
    """Every tensor the checkpoint must hold (transformers names) and its shape implied by config.json."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (hp.vocab_size, hp.hidden),
                                          "model.norm.weight": (hp.hidden,)}
    if not hp.tied:
        shapes["lm_head.weight"] = (hp.vocab_size, hp.hidden)
    for layer in range(hp.n_layer):
        prefix = f"model.layers.{layer}."
        shapes |= {
            prefix + "input_layernorm.weight": (hp.hidden,),
            prefix + "post_attention_layernorm.weight": (hp.hidden,),
            prefix + "self_attn.q_proj.weight": (hp.q_dim, hp.hidden),
            prefix + "self_attn.k_proj.weight": (hp.kv_dim, hp.hidden),
            prefix + "self_attn.v_proj.weight": (hp.kv_dim, hp.hidden),
            prefix + "self_attn.o_proj.weight": (hp.hidden, hp.q_dim),
            prefix + "mlp.gate_proj.weight": (hp.ffn, hp.hidden),
            prefix + "mlp.up_proj.weight": (hp.ffn, hp.hidden),
            prefix + "mlp.down_proj.weight": (hp.hidden, hp.ffn),
        }
        if hp.architecture.qkv_bias:
            shapes |= {prefix + "self_attn.q_proj.bias": (hp.q_dim,),
                       prefix + "self_attn.k_proj.bias": (hp.kv_dim,),
                       prefix + "self_attn.v_proj.bias": (hp.kv_dim,)}
    return shapes


EMBEDDING = "model.embed_tokens.weight"
LAYER_PREFIX = re.compile(r"model\.layers\.(\d{1,9})\.")


def check_sizes_against_tensors(hp: HParams, shapes: dict[str, tuple[int, ...]]) -> None:
    """config.json's vocabulary, width and depth against the tensors present, before anything is sized by
    them: a config claiming 10^9 layers or a 10^12 vocabulary is refused here, not by a MemoryError."""
    embedding = shapes.get(EMBEDDING)
    if embedding is None:
        raise CheckpointError(f"tensor {EMBEDDING} is missing from the checkpoint; expected it for "
                              f"{hp.architecture.hf_name}")
    if embedding != (hp.vocab_size, hp.hidden):
        raise CheckpointError(f"config.json: vocab_size {hp.vocab_size} and hidden_size {hp.hidden} imply "
                              f"{EMBEDDING} of shape {[hp.vocab_size, hp.hidden]}, got {list(embedding)}; is "
                              "config.json from the same model?")
    layers = {int(match.group(1)) for name in shapes if (match := LAYER_PREFIX.match(name))}
    present = max(layers) + 1 if layers else 0
    if hp.n_layer > present:
        raise CheckpointError(f"config.json: num_hidden_layers is {hp.n_layer}, expected at most {present}: the "
                              f"checkpoint holds tensors for {present} layers; is config.json from the same "
                              "model?")


# tensors a checkpoint may carry that the GGUF does not need
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def qk_head_count(hp: HParams, hf_name: str) -> int | None:
    """For q/k rows that need llama.cpp's rope permutation: the number of heads in that tensor."""
    if not hp.architecture.permute_qk:
        return None
    if ".self_attn.q_proj." in hf_name:
        return hp.n_head
    if ".self_attn.k_proj." in hf_name:
        return hp.n_kv_head
    return None


def write_hparams(writer: gguf.GGUFWriter, hp: HParams) -> None:
    writer.add_block_count(hp.n_layer)
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.hidden)
    writer.add_feed_forward_length(hp.ffn)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_kv_head)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    if hp.config.get("head_dim") is not None or hp.head_dim * hp.n_head != hp.hidden:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    if hp.architecture.write_rope_dimension:
        writer.add_vocab_size(hp.vocab_size)
        writer.add_rope_dimension_count(hp.head_dim)
    if hp.rope_scaling:
        _write_rope_scaling(writer, hp)


def _write_rope_scaling(writer: gguf.GGUFWriter, hp: HParams) -> None:
    scaling = hp.rope_scaling or {}
    writer.add_rope_scaling_type(gguf.RopeScalingType(scaling["rope_type"]))
    writer.add_rope_scaling_factor(scaling["factor"])
    if scaling["rope_type"] == "yarn":
        writer.add_rope_scaling_orig_ctx_len(scaling["original_max_position_embeddings"])
