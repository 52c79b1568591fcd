"""The demo-model recipe end to end at toy size: data -> base -> seed -> LoRA SFT -> adapter -> evaluation.

A tiny random-weight Llama stands in for the pretrained base (SmolLM2 is a Llama too): it is saved as a Hugging
Face folder with a small byte-level BPE trained on the synthetic text, so every stage is real (transformers and
peft train it, the runtime samples the pairs through llama.cpp, the adapter is written, checked against the base
GGUF and verified against the merged model) but small enough for a test. The pairs and DPO stages (off by
default) are the training package's, tested in tests/training; joining SFT's and DPO's LoRA into one adapter is
tested in tests/training/test_adapters.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rprm_lite.demo_model.recipe import BASE_GGUF, DEMO_ADAPTER, Recipe, RecipeConfig, main
from rprm_lite.errors import InputError

pytest.importorskip("llama_cpp", reason="the recipe samples pairs and converts with llama-cpp-python")
pytest.importorskip("peft", reason="the recipe trains LoRA adapters with peft (the train extra)")

TOY = {"train": 60, "dev": 6, "test": 4, "sft_max_steps": -1, "sft_epochs": 2, "signals_every": 6,
       "greedy_every": 12, "greedy_problems": 2, "signal_examples": 8, "precision": "fp32",
       "sft_learning_rate": 3e-2, "batch_size": 8, "micro_batch_size": 8, "max_tokens": 48, "eval_k": 2, "lora_r": 8,
       "threads": 1, "k": 3, "drill_steps": 4, "drill_problems": 40}


def tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, width-64 Llama with random weights and a BPE that knows the prompt and the critiques."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rprm_lite.convert.random_tokenizer import train_byte_level_bpe
    from rprm_lite.demo_model.synthetic import generate_split
    from rprm_lite.demo_model.synthetic_teacher import critique
    from rprm_lite.prompt import VERDICT_PHRASE, template

    def corpus():
        yield from ["".join(template("r-prm-eval"))] * 50
        for verdict in (" Yes", " No"):
            yield from [f"Verification: {VERDICT_PHRASE}{verdict}"] * 200
        for problem in generate_split("train", 80, seed=9):
            yield problem.question
            for index, (step, label) in enumerate(zip(problem.steps, problem.step_labels(), strict=True)):
                yield step.text
                if label is not None:
                    yield critique(problem, index, rng=random.Random(index))

    tokenizer = train_byte_level_bpe(corpus(), vocab_size=600)
    folder.mkdir(parents=True)
    tokenizer.write(folder)
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def toy_base(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("base") / "tiny-llama")


def toy_config(out, base, **changes) -> RecipeConfig:
    return RecipeConfig(out=str(out), base=str(base), **{**TOY, **changes})


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_base):
    out = tmp_path_factory.mktemp("recipe")
    lines: list[str] = []
    state = Recipe(toy_config(out, toy_base, evaluate=True), log=lines.append).run()
    return out, state, lines


def test_every_stage_runs_and_the_result_is_an_adapter_for_the_base(toy_run):
    from rprm_lite.adapter_file import load_model_info
    from rprm_lite.model_file import inspect_model

    out, state, _ = toy_run
    assert list(state["stages"]) == ["data", "base", "seed", "drill", "sft", "export", "evaluate"]
    stages = state["stages"]
    # the filter dropped the teacher's wrong critiques and kept the rest
    assert stages["seed"]["kept"] > 0 and stages["seed"]["dropped"]["wrong_verdict"] > 0
    balanced = stages["seed"]["balanced"]
    assert balanced["no"] / (balanced["no"] + balanced["yes"]) >= 0.44
    # early signals: teacher-forced accuracies (comparison words included), greedy dev F1 through the runtime
    signals = [json.loads(line) for line in (out / "sft" / "signals.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["step"] for s in signals][:2] == [0, 6]
    assert all(0 <= s[key] <= 1 for s in signals for key in ("digit_acc", "verdict_acc", "cmp_acc", "cmp_not_acc"))
    assert any("greedy_dev_f1" in s for s in signals)
    assert stages["export"]["trained"] == "sft"
    # the shipped file: one adapter for the base GGUF, carrying the demo's defaults
    info = load_model_info(out / BASE_GGUF, out / DEMO_ADAPTER)
    (adapter,) = info.adapters
    assert adapter.ranks == (TOY["lora_r"],)
    assert adapter.rprm["rprm.base_sha256"] == inspect_model(out / BASE_GGUF).sha256 == stages["base"]["gguf_sha256"]
    assert adapter.rprm["rprm.k"] == TOY["k"] and adapter.rprm["rprm.max_tokens"] == TOY["max_tokens"]
    assert "synthetic arithmetic" in adapter.rprm["rprm.description"]
    assert stages["export"]["sha256"] == adapter.sha256
    assert info.default_config().k == TOY["k"]


def test_evaluation_reports_f1_and_speed_for_each_model_on_the_test_split(toy_run):
    out, state, lines = toy_run
    results = state["stages"]["evaluate"]["processbench_test"]
    assert list(results) == ["base K=1", "SFT K=1", "SFT K=2", "SFT adaptive"]
    for result in results.values():
        assert result["items"] == TOY["test"] and result["seconds_per_step"] > 0
        assert 0 <= result["error_acc"] <= 100 and 0 <= result["correct_acc"] <= 100
        predictions = [json.loads(line) for line in open(result["predictions"], encoding="utf-8")]
        assert len(predictions) == TOY["test"]
    table = (out / "eval" / "report.md").read_text(encoding="utf-8")
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + len(results)  # header and rows
    assert any(line.startswith("  SFT K=2: F1") for line in lines)


def test_a_rerun_skips_finished_stages(toy_run, toy_base):
    out, state, _ = toy_run
    lines: list[str] = []
    again = Recipe(toy_config(out, toy_base, evaluate=True), log=lines.append).run()
    assert again["stages"] == state["stages"]
    assert all("done earlier" in line for line in lines) and len(lines) == len(state["stages"])
    # leaving out --evaluate (or adding it later) is not a change of the model's settings
    assert Recipe(toy_config(out, toy_base, evaluate=False), log=lines.append).run()["stages"] == state["stages"]


def test_a_rerun_with_other_settings_is_refused_before_any_work(toy_run, toy_base):
    out, _, _ = toy_run
    with pytest.raises(InputError, match="other settings.*lora_r"):
        Recipe(toy_config(out, toy_base, lora_r=4))


def test_a_folder_from_before_a_new_setting_resumes_with_its_default(tmp_path, toy_base):
    config = toy_config(tmp_path, toy_base)
    older = {k: v for k, v in config.to_dict().items() if k != "train_error_kinds"}
    (tmp_path / "stages.json").write_text(json.dumps({"config": older, "stages": {}}), encoding="utf-8")
    Recipe(config)
    with pytest.raises(InputError, match="other settings .train_error_kinds"):
        Recipe(toy_config(tmp_path, toy_base, train_error_kinds="copy"))


def test_same_seed_gives_the_same_data_and_base(tmp_path, toy_base):
    files = []
    for name in ("a", "b"):
        recipe = Recipe(toy_config(tmp_path / name, toy_base, seed=3), log=lambda line: None)
        recipe.out.mkdir()
        recipe.data()
        recipe.base()
        files.append([(recipe.out / path).read_bytes() for path in
                      ("data/train.jsonl", "data/test/gsm8k.json", "base/tokenizer.json", BASE_GGUF)])
    assert files[0] == files[1]


def test_command_line_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), "--lora-r", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings: lora-r must be at least 1")
    assert not (tmp_path / "r").exists()


def test_a_base_that_is_not_there_is_one_clean_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), "--base", "no-such-package-rprm"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-package-rprm" in err and "Traceback" not in err


def test_teacher_pairs_train_dpo_without_sampling_and_the_adapter_holds_both(tmp_path, toy_base):
    config = toy_config(tmp_path / "r", toy_base, teacher_pairs=8, dpo_max_steps=3, drill_steps=2)
    state = Recipe(config, log=lambda line: None).run()
    assert list(state["stages"]) == ["data", "base", "seed", "drill", "sft", "pairs", "dpo", "export"]
    assert state["stages"]["pairs"]["source"] == "teacher" and state["stages"]["pairs"]["pairs"] >= 8
    assert not (tmp_path / "r" / "sft.gguf").exists()  # nothing was sampled
    assert state["stages"]["dpo"]["steps"] == 3 and state["stages"]["export"]["trained"] == "dpo"
    with pytest.raises(InputError, match="--pair-problems .* or --teacher-pairs, not both"):
        toy_config(tmp_path / "x", toy_base, teacher_pairs=8, pair_problems=4)


def test_training_error_kinds_reach_the_data_and_a_typo_is_refused(tmp_path, toy_base):
    config = toy_config(tmp_path / "r", toy_base, train=40, train_error_share=1.0,
                        train_error_kinds="arithmetic,arithmetic,arithmetic,copy")
    Recipe(config, log=lambda line: None).data()
    manifest = json.loads((tmp_path / "r" / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["splits"]["train"]["error_kinds"] == {"arithmetic": 30, "copy": 10}
    with pytest.raises(InputError, match="unknown error kind 'slips'"):
        toy_config(tmp_path / "x", toy_base, train_error_kinds="slips")
