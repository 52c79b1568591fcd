"""Shared-prefix training: the instruction text every example starts with is computed once per micro-batch.

Every R-PRM training example begins with the same few hundred tokens of instructions (system turn, the
task, the five analysis aspects) before the question. A plain forward computes them once per example.
Here the longest token prefix common to all rows of a micro-batch is run once (batch 1), its key/value
cache is expanded over the rows (a view, no copy) and only the rest of each row is run on top of it.
Gradients reach the prefix through the expanded cache, so its weights get the sum over the rows, exactly
as in the plain forward: loss and gradients are the same up to floating-point rounding.

The prefix stops before the first supervised token (minus one: the logit that predicts the first
supervised token belongs to the position before it), so its own logits are never needed.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100  # label of a token without loss (Hugging Face's convention)


def shared_prefix_length(input_ids: Any, attention_mask: Any, labels: Any) -> int:
    """Tokens every row starts with, all attended and unsupervised, leaving the rows' first logit needed."""
    import torch

    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask == 1).all(dim=0)
    length = int(torch.cumprod(same.int(), dim=0).sum())
    supervised = (labels != IGNORE).int()
    first_supervised = int(supervised.argmax(dim=1).min()) if supervised.any() else input_ids.shape[1]
    return max(0, min(length, first_supervised - 1))


def expanded_cache(cache: Any, batch: int) -> Any:
    """A new DynamicCache holding `cache`'s keys and values repeated over `batch` rows (views, no copy)."""
    from transformers import DynamicCache

    expanded = DynamicCache()
    for index, layer in enumerate(cache.layers):
        keys, values = layer.keys, layer.values
        expanded.update(keys.expand(batch, *keys.shape[1:]), values.expand(batch, *values.shape[1:]), index)
    return expanded


def causal_lm_loss(logits: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy as transformers computes it: a sum over `num_items_in_batch`, else a mean."""
    import torch

    shifted = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    targets = labels[:, 1:].reshape(-1).to(shifted.device)
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(shifted, targets, ignore_index=IGNORE)
    total = torch.nn.functional.cross_entropy(shifted, targets, ignore_index=IGNORE, reduction="sum")
    return total / num_items_in_batch


def shared_prefix_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any,
                       num_items_in_batch: Any = None) -> tuple[Any, int]:
    """The causal-LM loss of a right-padded micro-batch, its common prefix run once; and that prefix's length."""
    logits, prefix = shared_prefix_logits(model, input_ids, attention_mask, labels)
    return causal_lm_loss(logits, labels[:, prefix:], num_items_in_batch), prefix


def shared_prefix_logits(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> tuple[Any, int]:
    """Logits of every position after the common prefix (all positions when there is none), and its length."""
    prefix = shared_prefix_length(input_ids, attention_mask, labels)
    if prefix == 0:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits, 0
    head = model(input_ids=input_ids[:1, :prefix], use_cache=True, logits_to_keep=1)
    cache = expanded_cache(getattr(head, "cache", None) or head.past_key_values, input_ids.shape[0])
    logits = model(input_ids=input_ids[:, prefix:], attention_mask=attention_mask, use_cache=False,
                   **{cache_argument(model): cache}).logits
    return logits, prefix


def cache_argument(model: Any) -> str:
    """transformers 5.24 renamed the forward's `past_key_values` to `cache`; take what this version has."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
