"""SFT with TRL on a tiny random Qwen2: loss falls, every weight (or only LoRA) moves, export is complete."""

from __future__ import annotations

import json

import pytest
import torch
from training_helpers import seed_records, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from rprm_lite.errors import InputError
from rprm_lite.prompt import template_hash
from rprm_lite.training.checkpoint import METADATA_FILE
from rprm_lite.training.data_files import read_critiques
from rprm_lite.training.errors import TrainingError
from rprm_lite.training.sft import critique_loss, sft_examples, train_sft
from rprm_lite.training.tokens import PromptTokenizer
from rprm_lite.training.train_config import SFTRunConfig


def sft_config(model_dir, data, out, **changes) -> SFTRunConfig:
    settings = {"learning_rate": 1e-2, "batch_size": 2, "micro_batch_size": 2, "max_steps": 12,
                "warmup_ratio": 0.0, "lr_scheduler": "constant", "logging_steps": 1, **changes}
    return SFTRunConfig(model=str(model_dir), data=str(data), out=str(out), **settings)


def examples_of(model_dir, data, style="chatml"):
    encoder = PromptTokenizer(AutoTokenizer.from_pretrained(model_dir))
    return sft_examples(read_critiques(data), encoder, prompt_style=style, max_length=8192)[0]


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


class Snapshots(TrainerCallback):
    """Copies of the model's parameters when training begins and ends (before export merges LoRA)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.begin = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.end = {n: p.detach().clone() for n, p in model.named_parameters()}


def test_trl_trains_on_exactly_our_loss_mask(small_model_dir, seed_file, tmp_path):
    from rprm_lite.training.sft import build_sft_trainer

    trainer, _, _ = build_sft_trainer(sft_config(small_model_dir, seed_file, tmp_path / "out"))
    examples = examples_of(small_model_dir, seed_file)
    rows = trainer.train_dataset
    assert sorted(map(tuple, rows["input_ids"])) == sorted(tuple(e.ids) for e in examples)
    for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True):
        mask = next(e.loss_mask for e in examples if e.ids == ids)
        assert labels == [t if m else -100 for t, m in zip(ids, mask, strict=True)]


def test_loss_on_a_fixed_set_halves_and_every_weight_changes(small_model_dir, seed_file, tmp_path):
    out = tmp_path / "sft"
    summary = train_sft(sft_config(small_model_dir, seed_file, out))

    examples = examples_of(small_model_dir, seed_file)
    base, trained = load(small_model_dir), load(out)
    assert critique_loss(trained, examples) < 0.5 * critique_loss(base, examples)
    changed = {name: not torch.equal(param, dict(trained.named_parameters())[name])
               for name, param in base.named_parameters()}
    assert all(changed.values()), [name for name, moved in changed.items() if not moved]
    assert summary.steps == 12 and summary.examples == 7 and summary.skipped_too_long == 0


def test_checkpoint_folder_has_weights_tokenizer_config_and_metadata(small_model_dir, seed_file, tmp_path):
    out = tmp_path / "sft"
    config = sft_config(small_model_dir, seed_file, out, max_steps=4, save_steps=2, prompt_style="r-prm-eval")
    train_sft(config)

    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", METADATA_FILE, "train_log.jsonl"} <= {p.name for p in out.iterdir()}
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["command"] == "sft"
    assert metadata["config"] == config.to_dict()
    assert (metadata["prompt_style"], metadata["template_sha256"]) == ("r-prm-eval", template_hash("r-prm-eval"))
    assert metadata["result"]["steps"] == 4
    for step in (2, 4):  # intermediate checkpoints carry the same metadata
        assert json.loads((out / f"checkpoint-{step}" / METADATA_FILE).read_text())["config"] == config.to_dict()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log if "loss" in entry] == [1, 2, 3, 4]
    assert all(entry["tokens_per_second"] > 0 for entry in log if "loss" in entry)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in load(out).generation_config.eos_token_id


def test_lora_moves_only_adapters_and_the_merged_export_differs(small_model_dir, seed_file, tmp_path):
    out = tmp_path / "sft-lora"
    snapshots = Snapshots()
    train_sft(sft_config(small_model_dir, seed_file, out, lora=True, lora_r=4, max_steps=3),
              callbacks=[snapshots])

    base = dict(load(small_model_dir).named_parameters())
    assert snapshots.trainable and all("lora_" in name for name in snapshots.trainable)
    for name, after in snapshots.end.items():
        if name in snapshots.trainable:
            assert not torch.equal(after, snapshots.begin[name]), f"adapter {name} did not change"
        else:
            base_name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(after, base[base_name]), f"frozen {name} changed"
    merged = dict(load(out).named_parameters())
    assert merged.keys() == base.keys()  # a plain checkpoint: no adapter tensors left
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])


class RunsOutOfMemory(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_says_what_to_change(small_model_dir, seed_file, tmp_path):
    with pytest.raises(TrainingError, match="out of memory on the GPU with micro-batch-size 2 .* try "
                                            "--gradient-checkpointing, --lora, a smaller --micro-batch-size"):
        train_sft(sft_config(small_model_dir, seed_file, tmp_path / "out"), callbacks=[RunsOutOfMemory()])


def test_bad_checkpoints_are_refused(seed_file, tmp_path):
    with pytest.raises(TrainingError, match="no such folder exists"):
        train_sft(sft_config(tmp_path / "missing", seed_file, tmp_path / "out"))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(TrainingError, match="expected a causal language model .* 'bert' .*BertForMaskedLM"):
        train_sft(sft_config(bert, seed_file, tmp_path / "out"))


def test_bad_data_is_named(small_model_dir, tmp_path):
    record = seed_records()[0]
    cases = [({**record, "critique": " "}, "line 1: 'critique' must be a non-empty string"),
             ({**record, "step": 7}, "line 1: 'step' must be a step number from 1 to 2, got 7"),
             ({k: v for k, v in record.items() if k != "steps"}, "line 1: missing 'steps'")]
    for bad, message in cases:
        data = write_jsonl(tmp_path / "bad.jsonl", [bad])
        with pytest.raises(InputError, match=message):
            train_sft(sft_config(small_model_dir, data, tmp_path / "out"))


def test_examples_over_max_length_are_skipped_and_sizes_must_divide(small_model_dir, seed_file, tmp_path):
    with pytest.raises(TrainingError, match="all 7 examples are longer than --max-length 32 tokens"):
        train_sft(sft_config(small_model_dir, seed_file, tmp_path / "out", max_length=32))
    with pytest.raises(TrainingError, match="batch-size 4 is not a multiple of micro-batch-size 3"):
        train_sft(sft_config(small_model_dir, seed_file, tmp_path / "out", batch_size=4, micro_batch_size=3))
    with pytest.raises(InputError, match="precision must be one of auto, bf16, fp32, got 'fp16'"):
        sft_config(small_model_dir, seed_file, tmp_path / "out", precision="fp16")
