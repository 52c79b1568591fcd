"""The arithmetic drill: its facts are the problems' expressions as the teacher writes them, only their results
are supervised, a tiny model learns them, and SFT continues the drill's LoRA.

The drill is the demo recipe's (`demo_model/arithmetic_drill.py`); its test lives here for the training tests'
tiny checkpoints and seed records (`conftest.py`, `training_helpers.py`)."""

from __future__ import annotations

import random

import pytest
import torch
from training_helpers import seed_records, write_jsonl
from transformers import AutoTokenizer

from rprm_lite.demo_model.arithmetic_drill import IGNORE, DrillConfig, Fact, accuracy, facts, pack, train_drill
from rprm_lite.demo_model.synthetic import generate_split
from rprm_lite.demo_model.synthetic_problems import apply
from rprm_lite.demo_model.synthetic_teacher import critique
from rprm_lite.errors import InputError
from rprm_lite.training.checkpoint import load_causal_lm
from rprm_lite.training.errors import TrainingError
from rprm_lite.training.sft import build_sft_trainer
from rprm_lite.training.train_config import SFTRunConfig


def test_facts_are_each_step_s_expression_with_its_true_result_as_the_teacher_writes_it():
    problems = generate_split("train", 40, seed=3, error_share=0.5)
    found = facts(problems)
    steps = [s for p in problems for s in p.steps if apply(s.op, s.left, s.right) is not None]
    assert len(found) == len(steps) > 40
    for fact, step in zip(found, steps, strict=True):
        assert fact.answer == f" {apply(step.op, step.left, step.right)}" and fact.op == step.op
    slips = [(p, p.label) for p in problems if p.error and p.error["kind"] == "arithmetic"]
    assert slips
    for problem, index in slips:  # the drill teaches the number the teacher's check writes, not the step's slip
        step = problem.steps[index]
        fact = next(f for f in facts([problem]) if f.question.startswith(f"{step.left} "))
        assert f"**Calculation Analysis**: {fact.question}{fact.answer};" in critique(problem, index,
                                                                                       rng=random.Random(0))
        assert fact.answer != f" {step.result}"


def test_a_packed_sequence_supervises_the_results_and_nothing_else(small_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    chunk = [Fact("36 + 7 =", " 43", "+"), Fact("77 - 54 =", " 23", "-"), Fact("60 ÷ 3 =", " 20", "/")]
    ids, labels, answers = pack(chunk, tokenizer)
    assert tokenizer.decode(ids) == "36 + 7 = 43\n77 - 54 = 23\n60 ÷ 3 = 20"
    supervised = [i for i, label in enumerate(labels) if label != IGNORE]
    assert supervised == [i for begin, end, _ in answers for i in range(begin, end)]
    assert [tokenizer.decode(ids[begin:end]) for begin, end, _ in answers] == [" 43", " 23", " 20"]
    assert [op for _, _, op in answers] == ["+", "-", "/"]
    assert all(labels[i] == ids[i] for i in supervised)


class Oracle:
    """A stand-in model whose argmax is the next input token, except at the positions in `wrong`."""

    device = "cpu"
    training = False

    def __init__(self, wrong: set[int]) -> None:
        self.wrong = wrong

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, input_ids):
        ids = input_ids[0].tolist()
        logits = torch.zeros((1, len(ids), max(ids) + 2))
        for position in range(len(ids)):
            target = ids[position + 1] if position + 1 < len(ids) else 0
            logits[0, position, max(ids) + 1 if position in self.wrong else target] = 1.0
        return type("Output", (), {"logits": logits})()


def test_accuracy_is_the_share_of_whole_results_predicted_teacher_forced(small_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    chunk = [Fact("36 + 7 =", " 43", "+"), Fact("12 + 30 =", " 42", "+"), Fact("77 - 54 =", " 23", "-")]
    _, _, answers = pack(chunk, tokenizer)
    assert accuracy(Oracle(set()), tokenizer, chunk) == {"+": 100.0, "-": 100.0}
    last_of_second = answers[1][1] - 2  # the guess for the second result's last token
    assert accuracy(Oracle({last_of_second}), tokenizer, chunk) == {"+": 50.0, "-": 100.0}
    two_at_a_time = accuracy(Oracle({last_of_second}), tokenizer, chunk, per_sequence=2)  # packed otherwise
    assert two_at_a_time["-"] == 100.0


@pytest.fixture(scope="module")
def drilled(small_model_dir, tmp_path_factory):
    """A tiny random Qwen2 drilled for 40 steps on 16 facts, and its saved adapter."""
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir)
    known = facts(generate_split("train", 6, seed=1, error_share=0.0))[:16]
    out = tmp_path_factory.mktemp("drill") / "adapter"
    config = DrillConfig(steps=40, learning_rate=1e-2, facts_per_sequence=8, batch_size=2, lora_r=8, lora_alpha=16)
    lines: list[str] = []
    summary = train_drill(load_causal_lm(str(small_model_dir)), tokenizer, known, known, out, config,
                          log=lines.append)
    return summary, out, lines


def test_the_drill_trains_a_lora_on_the_results_and_saves_it(drilled):
    summary, out, lines = drilled
    assert summary["last_loss"] < summary["first_loss"] / 5, summary
    assert summary["facts_seen"] == 40 * 16 and summary["distinct_facts"] == 16
    assert set(summary["accuracy_before"]) == set(summary["accuracy_after"]) <= {"+", "-", "×", "÷"}
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert any("held-out accuracy after" in line for line in lines)


def test_sft_continues_the_drill_s_lora(drilled, small_model_dir, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    _, adapter, _ = drilled
    data = write_jsonl(tmp_path / "seed.jsonl", seed_records())
    config = SFTRunConfig(model=str(small_model_dir), data=str(data), out=str(tmp_path / "sft"), lora=True, lora_r=8,
                          lora_alpha=16, init_adapter=str(adapter), max_steps=1, batch_size=2, micro_batch_size=2)
    trainer, tokenizer, _ = build_sft_trainer(config)
    assert isinstance(trainer.model, PeftModel)
    saved = load_file(adapter / "adapter_model.safetensors")
    now = {name: p for name, p in trainer.model.named_parameters() if "lora_" in name}
    assert now and all(p.requires_grad for p in now.values())
    for name, value in saved.items():  # peft saves "...q_proj.lora_A.weight"; the live name adds ".default"
        live = name.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight",
                                                                               ".lora_B.default.weight")
        assert torch.equal(now[live].detach(), value), name


def test_a_drill_to_continue_needs_lora_and_a_real_adapter(small_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "seed.jsonl", seed_records())
    with pytest.raises(InputError, match="init-adapter needs --lora"):
        SFTRunConfig(model=str(small_model_dir), data=str(data), out=str(tmp_path / "o"), init_adapter="x")
    (tmp_path / "empty").mkdir()
    config = SFTRunConfig(model=str(small_model_dir), data=str(data), out=str(tmp_path / "o"), lora=True,
                          init_adapter=str(tmp_path / "empty"))
    with pytest.raises(TrainingError, match="cannot load it as a peft LoRA adapter"):
        build_sft_trainer(config)
