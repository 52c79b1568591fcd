"""The hyper-parameters llama.cpp relies on, checked before it sees a GGUF file.

llama.cpp kills the whole process on some values instead of failing the load: GGML_ASSERTs on a
block_count of 0 or above 512, on a tensor dimension of 0 or on duplicate vocabulary entries, a
division by zero on a head count of 0, NaN scores from a NaN rope base. Per-key rules live in
`RULES` (type and range, after the `<arch>.` prefix); `RELATIONS` are the checks that relate keys
to each other and to the tensors present. Each check returns a problem text or None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
MAX_CONTEXT = 1 << 27  # far beyond any released model; keeps cache sizes in 32-bit range
MAX_WIDTH = 1 << 20  # embedding, feed-forward and head sizes
MAX_DIMS = 4  # GGML_MAX_DIMS
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")
LAYER_TENSOR = re.compile(r"blk\.(\d+)\.")


@dataclass(frozen=True)
class GGUFArray:
    """An array value of the header: its item type and length, and its items when short and numeric."""

    item_type: int
    count: int
    values: tuple[int | float, ...] | None = None
    distinct: int | None = None  # for string arrays: how many different strings


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    type: int
    offset: int  # absolute, in the file
    n_bytes: int


@dataclass(frozen=True)
class Rule:
    kind: type  # int, float or str
    low: float | None = None
    high: float | None = None
    required: bool = False
    per_layer: bool = False  # may also be an array with one value per layer
    choices: tuple[str, ...] = ()


RULES: dict[str, Rule] = {
    "context_length": Rule(int, 1, MAX_CONTEXT, required=True),
    "embedding_length": Rule(int, 1, MAX_WIDTH, required=True),
    "block_count": Rule(int, 1, MAX_LAYERS, required=True),
    "feed_forward_length": Rule(int, 1, MAX_WIDTH, per_layer=True),
    "attention.head_count": Rule(int, 1, MAX_WIDTH, per_layer=True),
    "attention.head_count_kv": Rule(int, 1, MAX_WIDTH, per_layer=True),
    "attention.key_length": Rule(int, 1, MAX_WIDTH),
    "attention.value_length": Rule(int, 1, MAX_WIDTH),
    "rope.dimension_count": Rule(int, 0, MAX_WIDTH),
    "rope.freq_base": Rule(float, 1e-6, 1e12),
    "rope.scaling.type": Rule(str, choices=ROPE_SCALING_TYPES),
    "rope.scaling.factor": Rule(float, 0, 1e6),
    "attention.layer_norm_rms_epsilon": Rule(float, 0, 1),
    "attention.layer_norm_epsilon": Rule(float, 0, 1),
    "expert_count": Rule(int, 0, MAX_EXPERTS),
    "expert_used_count": Rule(int, 0, MAX_EXPERTS, per_layer=True),
    "expert_group_count": Rule(int, 0, MAX_EXPERTS),
    "nextn_predict_layers": Rule(int, 0, MAX_LAYERS),
}


def problems(arch: str, fields: Mapping[str, Any], tensors: list[TensorInfo]) -> list[str]:
    """Everything in a header that would crash llama.cpp; empty when the file is safe to load."""
    found = [text for key, value in fields.items() if (text := _non_finite(key, value))]
    found += [text for name, rule in RULES.items()
              if not _non_finite(f"{arch}.{name}", fields.get(f"{arch}.{name}"))
              and (text := _check_rule(f"{arch}.{name}", rule, fields))]
    found += [text for tensor in tensors if (text := _check_dims(tensor))]
    if found:  # the relations assume every value has its type and range
        return found
    hp = {name: fields.get(f"{arch}.{name}") for name in RULES}
    return [text for relation in RELATIONS if (text := relation(hp, fields, tensors))]


def _non_finite(key: str, value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key} is {value}, expected a finite number"
    return None


def _check_rule(key: str, rule: Rule, fields: Mapping[str, Any]) -> str | None:
    if key not in fields:
        return f"{key} is missing" if rule.required else None
    value = fields[key]
    if rule.per_layer and isinstance(value, GGUFArray):
        if value.values is None:
            return f"{key} is an array of {value.count} items of type {value.item_type}, expected numbers per layer"
        return next((text for item in value.values if (text := _check_value(key, rule, item))), None)
    return _check_value(key, rule, value)


def _check_value(key: str, rule: Rule, value: Any) -> str | None:
    if not _has_kind(rule.kind, value):
        return f"{key} is {_describe(value)}, expected {KIND_NAMES[rule.kind]}"
    if rule.choices and value not in rule.choices:
        return f"{key} is {value!r}, expected one of {', '.join(rule.choices)}"
    if rule.low is not None and not rule.low <= value <= rule.high:
        return f"{key} is {value}, expected {rule.low:,} to {rule.high:,}"
    return None


KIND_NAMES = {int: "an integer", float: "a number", str: "a string"}


def _has_kind(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _describe(value: Any) -> str:
    if isinstance(value, GGUFArray):
        return f"an array of {value.count} items"
    return f"{value!r} ({type(value).__name__})"


def _check_dims(tensor: TensorInfo) -> str | None:
    if not 1 <= len(tensor.dims) <= MAX_DIMS:
        return f"tensor {tensor.name} has {len(tensor.dims)} dimensions, expected 1 to {MAX_DIMS}"
    if min(tensor.dims) < 1:
        return f"tensor {tensor.name} has shape {list(tensor.dims)}, expected every dimension >= 1"
    return None


# -- relations between keys and tensors ---------------------------------------------------------
# A header's values by key, and the architecture's by name (RULES): ints, floats, strings or GGUFArrays as the
# file holds them, each checked against its rule before a relation compares them, hence Any.
Fields = Mapping[str, Any]
HParams = dict[str, Any]

def _per_layer(value: Any, n_layer: int) -> list[Any]:
    if isinstance(value, GGUFArray):
        return list(value.values or ())
    return [value] * n_layer


def _layers_match_tensors(hp: HParams, fields: Fields, tensors: list[TensorInfo]) -> str | None:
    layers = {int(match.group(1)) for t in tensors if (match := LAYER_TENSOR.match(t.name))}
    expected = set(range(hp["block_count"]))
    if layers != expected:
        return (f"block_count is {hp['block_count']} but the file holds tensors for "
                f"{len(layers)} layers ({_span(layers)}); expected blk.0 to blk.{hp['block_count'] - 1}")
    return None


def _span(layers: set[int]) -> str:
    return f"blk.{min(layers)} to blk.{max(layers)}" if layers else "none"


def _arrays_have_one_value_per_layer(hp: HParams, fields: Fields, tensors: list[TensorInfo]) -> str | None:
    for name, rule in RULES.items():
        value = hp[name]
        if rule.per_layer and isinstance(value, GGUFArray) and value.count != hp["block_count"]:
            return f"{name} has {value.count} values, expected one per layer ({hp['block_count']})"
    return None


def _heads_divide(hp: HParams, fields: Fields, tensors: list[TensorInfo]) -> str | None:
    n_layer = hp["block_count"]
    heads = _per_layer(hp["attention.head_count"], n_layer) if hp["attention.head_count"] is not None else []
    kv = _per_layer(hp["attention.head_count_kv"], n_layer) if hp["attention.head_count_kv"] is not None else heads
    for layer, (n_head, n_kv) in enumerate(zip(heads, kv, strict=False)):
        if n_head % n_kv:
            return f"layer {layer}: head_count {n_head} is not a multiple of head_count_kv {n_kv}"
        if hp["attention.key_length"] is None and hp["embedding_length"] % n_head:
            return (f"layer {layer}: embedding_length {hp['embedding_length']} is not a multiple of "
                    f"head_count {n_head}")
    return None


def _experts_consistent(hp: HParams, fields: Fields, tensors: list[TensorInfo]) -> str | None:
    n_expert = hp["expert_count"] or 0
    used = max(_per_layer(hp["expert_used_count"], hp["block_count"]), default=0) if hp["expert_used_count"] else 0
    groups = hp["expert_group_count"] or 0
    if used > n_expert or (n_expert > 0 and used == 0):
        return f"expert_used_count {used} does not fit expert_count {n_expert}"
    if groups and (groups >= n_expert or n_expert % groups):
        return f"expert_group_count {groups} does not divide expert_count {n_expert}"
    if (hp["nextn_predict_layers"] or 0) > hp["block_count"]:
        return f"nextn_predict_layers {hp['nextn_predict_layers']} exceeds block_count {hp['block_count']}"
    return None


def _embedding_matches_tensor(hp: HParams, fields: Fields, tensors: list[TensorInfo]) -> str | None:
    embedding = next((t for t in tensors if t.name == "token_embd.weight"), None)
    if embedding is None:
        return "the file has no token_embd.weight tensor"
    if embedding.dims[0] != hp["embedding_length"]:
        return f"embedding_length is {hp['embedding_length']} but token_embd.weight has shape {list(embedding.dims)}"
    tokens = fields.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GGUFArray) and len(embedding.dims) > 1 and embedding.dims[1] != tokens.count:
        return f"the vocabulary has {tokens.count} tokens but token_embd.weight has shape {list(embedding.dims)}"
    return None


def _vocabulary_entries_unique(hp: HParams, fields: Fields, tensors: list[TensorInfo]) -> str | None:
    tokens = fields.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GGUFArray) and tokens.distinct is not None and tokens.distinct != tokens.count:
        return f"tokenizer.ggml.tokens holds {tokens.count - tokens.distinct} duplicate entries"
    return None


RELATIONS: tuple[Callable[[HParams, Fields, list[TensorInfo]], str | None], ...] = (
    _layers_match_tensors, _arrays_have_one_value_per_layer, _heads_divide, _experts_consistent,
    _embedding_matches_tensor, _vocabulary_entries_unique,
)
