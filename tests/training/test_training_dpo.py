"""DPO with TRL: the reference stays bit-identical while the chosen-minus-rejected margin rises."""

from __future__ import annotations

import json

import pytest
import torch
from training_helpers import pair_records, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from rprm_lite.errors import InputError
from rprm_lite.training.checkpoint import METADATA_FILE
from rprm_lite.training.data_files import read_pairs
from rprm_lite.training.dpo import build_dpo_trainer, dpo_examples, reward_margins, train_dpo
from rprm_lite.training.tokens import PromptTokenizer
from rprm_lite.training.train_config import DPORunConfig
from rprm_lite.training.trainer_setup import run_and_export


def dpo_config(model_dir, data, out, **changes) -> DPORunConfig:
    settings = {"learning_rate": 3e-3, "batch_size": 2, "micro_batch_size": 2, "max_steps": 6,
                "warmup_ratio": 0.0, "lr_scheduler": "constant", "logging_steps": 1, **changes}
    return DPORunConfig(model=str(model_dir), data=str(data), out=str(out), **settings)


def mean(values):
    return sum(values) / len(values)


def test_reference_is_untouched_and_the_reward_margin_rises(small_model_dir, pairs_file, tmp_path):
    config = dpo_config(small_model_dir, pairs_file, tmp_path / "dpo")
    trainer, tokenizer, summary = build_dpo_trainer(config)
    reference = trainer.ref_model
    before = {name: tensor.clone() for name, tensor in reference.state_dict().items()}
    examples = dpo_examples(read_pairs(pairs_file), PromptTokenizer(tokenizer), prompt_style="chatml",
                            max_length=8192)[0]
    margins_before = reward_margins(trainer.model, reference, examples, beta=config.beta)

    run_and_export(trainer, tokenizer, config, "dpo", summary)

    on_disk = AutoModelForCausalLM.from_pretrained(small_model_dir, dtype=torch.float32).state_dict()
    assert all(torch.equal(tensor, before[name]) for name, tensor in reference.state_dict().items())
    assert all(torch.equal(tensor, on_disk[name]) for name, tensor in reference.state_dict().items())
    policy = AutoModelForCausalLM.from_pretrained(config.out, dtype=torch.float32)
    margins_after = reward_margins(policy, reference, examples, beta=config.beta)
    assert max(abs(m) for m in margins_before) < 1e-6  # policy == reference before training
    assert mean(margins_after) > 0.05
    assert sum(m > 0 for m in margins_after) >= 4  # most of the 7 pairs
    metadata = json.loads((tmp_path / "dpo" / METADATA_FILE).read_text())
    assert metadata["command"] == "dpo" and metadata["config"]["beta"] == 0.1


def test_lora_dpo_uses_the_frozen_base_as_reference(small_model_dir, pairs_file, tmp_path):
    config = dpo_config(small_model_dir, pairs_file, tmp_path / "dpo-lora", lora=True, lora_r=4, max_steps=3)
    trainer, tokenizer, summary = build_dpo_trainer(config)
    assert trainer.ref_model is None  # TRL disables the adapters to get the reference
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}

    run_and_export(trainer, tokenizer, config, "dpo", summary)

    assert all(torch.equal(p, frozen[n]) for n, p in trainer.model.named_parameters() if n in frozen)
    base = AutoModelForCausalLM.from_pretrained(small_model_dir, dtype=torch.float32)
    merged = AutoModelForCausalLM.from_pretrained(config.out, dtype=torch.float32)
    examples = dpo_examples(read_pairs(pairs_file), PromptTokenizer(AutoTokenizer.from_pretrained(config.out)),
                            prompt_style="chatml", max_length=8192)[0]
    assert mean(reward_margins(merged, base, examples, beta=config.beta)) > 0


def test_bad_pair_files(small_model_dir, tmp_path):
    no_pairs = [{**record, "pairs": [], "outcome": "all_agree"} for record in pair_records()]
    cases = [
        (no_pairs, "no preference pairs; every step's critiques all agreed or all disagreed"),
        (pair_records("r-prm-eval"), "sampled with prompt style 'r-prm-eval' but --prompt-style is 'chatml'"),
        ([{**pair_records()[0], "pairs": [[0, 5]]}], "line 1: pair refers to sample 5, but there are 2 samples"),
        ([{**pair_records()[0], "pairs": [0, 1]}], r"line 1: each pair must be \[chosen sample index"),
    ]
    for records, message in cases:
        data = write_jsonl(tmp_path / "pairs.jsonl", records)
        with pytest.raises(InputError, match=message):
            train_dpo(dpo_config(small_model_dir, data, tmp_path / "out"))
