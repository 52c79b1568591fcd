"""SFT's LoRA and then DPO's (trained on the SFT model merged) joined into one adapter: exactly their sum."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from rprm_lite.training.adapters import concatenate_adapters  # noqa: E402
from rprm_lite.training.errors import TrainingError  # noqa: E402


def tiny_llama():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True))


def random_lora(model, folder, *, r, alpha, seed):
    """A peft LoRA on every linear layer with random A and B (as after training), saved to `folder`."""
    torch.manual_seed(seed)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear"))
    for name, param in lora.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(param, std=0.05)
    lora.save_pretrained(folder)
    return lora.merge_and_unload()


def test_two_adapters_in_sequence_equal_their_concatenation(tmp_path):
    base = tmp_path / "base"
    tiny_llama().save_pretrained(base)
    after_sft = random_lora(tiny_llama(), tmp_path / "sft", r=4, alpha=8, seed=1)
    after_dpo = random_lora(after_sft, tmp_path / "dpo", r=2, alpha=6, seed=2)  # on the merged SFT model
    joined = concatenate_adapters([tmp_path / "sft", tmp_path / "dpo"], tmp_path / "joined", base=base)
    merged = peft.PeftModel.from_pretrained(transformers.LlamaForCausalLM.from_pretrained(base),
                                            str(joined)).merge_and_unload()
    expected = after_dpo.state_dict()
    for name, weight in merged.state_dict().items():
        assert torch.allclose(weight, expected[name], atol=1e-6), name
    config = (joined / "adapter_config.json").read_text(encoding="utf-8")
    assert '"r": 6' in config and '"lora_alpha": 6' in config


def test_adapters_of_other_modules_are_refused(tmp_path):
    random_lora(tiny_llama(), tmp_path / "a", r=2, alpha=2, seed=1)
    torch.manual_seed(3)
    other = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"]))
    other.save_pretrained(tmp_path / "b")
    with pytest.raises(TrainingError, match="adapt different modules"):
        concatenate_adapters([tmp_path / "a", tmp_path / "b"], tmp_path / "joined", base=tmp_path)
