"""Shared-prefix training equals the plain forward: same loss, same gradients, on a tiny Qwen2 and on a tiny
Llama with peft LoRA adapters (what the demo recipe trains: SmolLM2 is a Llama)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rprm_lite.training.shared_prefix import (  # noqa: E402
    IGNORE,
    causal_lm_loss,
    shared_prefix_length,
    shared_prefix_loss,
)


def tiny_model(kind: str = "qwen2"):
    torch.manual_seed(0)
    shape = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True)
    if kind == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**shape))
    peft = pytest.importorskip("peft")
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape))
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, param in lora.named_parameters():  # B starts at zero; move it so the adapters take part
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return lora


def batch(prefix: int = 30, width: int = 80):
    """Four right-padded rows sharing `prefix` tokens; the loss starts at different places in each row."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 300, (4, width), generator=generator)
    ids[:, :prefix] = ids[0, :prefix]
    attention = torch.ones_like(ids)
    attention[1, 60:] = 0
    attention[2, 70:] = 0
    labels = ids.clone()
    for row, start in enumerate((40, 45, 38, 50)):
        labels[row, :start] = IGNORE
    labels[attention == 0] = IGNORE
    return ids, attention, labels


def gradients(model):
    grads = [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize(("kind", "num_items"), [("qwen2", None), ("qwen2", "count"), ("llama-lora", "count")])
def test_loss_and_gradients_equal_the_plain_forward(kind, num_items):
    model = tiny_model(kind)
    ids, attention, labels = batch()
    items = (labels[:, 1:] != IGNORE).sum() if num_items else None
    loss, prefix = shared_prefix_loss(model, ids, attention, labels, items)
    loss.backward()
    shared = gradients(model)
    assert shared, "no trainable parameters"
    plain = causal_lm_loss(model(input_ids=ids, attention_mask=attention).logits, labels, items)
    plain.backward()
    assert prefix == 30
    assert abs(loss.item() - plain.item()) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(shared, gradients(model), strict=True)) < 1e-5


def test_the_prefix_stops_before_the_first_supervised_token_and_at_padding():
    ids, attention, labels = batch(prefix=45)
    assert shared_prefix_length(ids, attention, labels) == 37  # row 2's loss starts at 38: its logit 37 is needed
    labels[:, :] = IGNORE
    attention[3, 10:] = 0
    assert shared_prefix_length(ids, attention, labels) == 10  # only tokens every row attends to
    assert shared_prefix_length(ids[:1], attention[:1], labels[:1]) == 0  # one row: nothing to share


def test_no_common_prefix_falls_back_to_the_plain_forward():
    model = tiny_model()
    ids, attention, labels = batch()
    ids[1, 0] = (ids[0, 0] + 1) % 300
    loss, prefix = shared_prefix_loss(model, ids, attention, labels)
    assert prefix == 0
    plain = causal_lm_loss(model(input_ids=ids, attention_mask=attention).logits, labels)
    assert abs(loss.item() - plain.item()) < 1e-6


def test_the_sft_trainer_uses_it_with_the_same_loss(tmp_path):
    """The trainer's training loss equals TRL's own on the same micro-batch."""
    pytest.importorskip("trl")
    from rprm_lite.training.sft import shared_prefix_sft_trainer

    trainer_class = shared_prefix_sft_trainer()
    model = tiny_model()
    model.train()
    ids, attention, labels = batch()
    inputs = {"input_ids": ids, "attention_mask": attention, "labels": labels}
    trainer = trainer_class.__new__(trainer_class)  # compute_loss needs only args and the accelerator here
    trainer.args = type("Args", (), {"average_tokens_across_devices": False})()
    trainer.accelerator = type("Accelerator", (), {"gather_for_metrics": staticmethod(lambda x: x),
                                                   "num_processes": 1})()
    trainer._total_train_tokens, trainer._metrics = 0, {"train": {}}
    items = (labels[:, 1:] != IGNORE).sum()
    ours = trainer_class.compute_loss(trainer, model, dict(inputs), num_items_in_batch=items)
    plain = causal_lm_loss(model(input_ids=ids, attention_mask=attention).logits, labels, items)
    assert abs(ours.item() - plain.item()) < 1e-5
    assert trainer._metrics["train"]["num_tokens"] == [int(attention.sum())]  # tokens/s is still logged
