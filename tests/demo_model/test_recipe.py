"""The demo-model recipe end to end at toy size: data -> tokenizer and base -> seed -> SFT -> pairs -> DPO -> GGUF.

The toy settings keep every stage real (the runtime samples the pairs, llama.cpp quantizes the file)
but small enough for a test: a 2-layer, width-64 model trained on 60 problems.
"""

from __future__ import annotations

import json

import pytest

from rprm_lite.demo_model.recipe import DEMO_FILE, Recipe, RecipeConfig, main
from rprm_lite.errors import InputError

pytest.importorskip("llama_cpp", reason="the recipe samples pairs and quantizes with llama-cpp-python")

TOY = {"train": 60, "dev": 6, "test": 8, "drill_steps": 3, "sft_max_steps": -1, "signals_every": 4, "greedy_every": 6,
       "greedy_problems": 3, "dpo_max_steps": -1, "precision": "fp32", "short_steps": 3, "hidden": 64, "layers": 2,
       "heads": 2, "kv_heads": 1, "intermediate": 128,
       "sft_learning_rate": 1e-2, "sft_epochs": 6, "batch_size": 8, "micro_batch_size": 8, "pair_problems": 30,
       "pair_k": 8, "pair_temperature": 1.0, "max_tokens": 160, "dpo_epochs": 1, "eval_k": 2}


def toy_config(out, **changes) -> RecipeConfig:
    return RecipeConfig(out=str(out), **{**TOY, **changes})


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe")
    lines: list[str] = []
    state = Recipe(toy_config(out, evaluate=True), log=lines.append).run()
    return out, state, lines


def test_every_stage_runs_and_the_model_is_a_quantized_rprm(toy_run):
    import llama_cpp

    from rprm_lite.model_file import inspect_model

    out, state, _ = toy_run
    assert list(state["stages"]) == ["data", "base", "seed", "drill", "short", "sft", "pairs", "dpo", "export",
                                     "evaluate"]
    stages = state["stages"]
    # the filter dropped the teacher's wrong critiques and kept the rest
    assert stages["seed"]["kept"] > 0 and stages["seed"]["dropped"]["wrong_verdict"] > 0
    balanced = stages["seed"]["balanced"]
    assert balanced["no"] / (balanced["no"] + balanced["yes"]) >= 0.44
    assert stages["drill"]["steps"] == 3
    # early signals: teacher-forced accuracies every 4 steps, greedy dev F1 through the runtime every 6
    signals = [json.loads(line) for line in (out / "sft" / "signals.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["step"] for s in signals][:3] == [0, 4, 8]
    assert all(0 <= s["digit_acc"] <= 1 and 0 <= s["verdict_acc"] <= 1 for s in signals)
    assert any("greedy_dev_f1" in s for s in signals)
    assert stages["pairs"]["pairs"] > 0 and stages["dpo"]["steps"] > 0
    info = inspect_model(out / DEMO_FILE)
    assert info.architecture == "qwen2" and info.file_type == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert info.rprm["rprm.prompt_style"] == "r-prm-eval"
    assert info.rprm["rprm.max_tokens"] == TOY["max_tokens"]
    assert "synthetic arithmetic" in info.description
    assert stages["export"]["sha256"] == info.sha256


def test_evaluation_reports_f1_for_each_model_on_the_test_split(toy_run):
    out, state, lines = toy_run
    results = state["stages"]["evaluate"]["processbench_test"]
    assert list(results) == ["base K=1", "SFT K=1", "SFT K=2", "DPO K=1", "DPO K=2"]
    for result in results.values():
        assert result["items"] == TOY["test"]
        assert 0 <= result["error_acc"] <= 100 and 0 <= result["correct_acc"] <= 100
        predictions = [json.loads(line) for line in open(result["predictions"], encoding="utf-8")]
        assert len(predictions) == TOY["test"]
    table = (out / "eval" / "report.md").read_text(encoding="utf-8")
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + len(results)  # header and rows
    assert any(line.startswith("  DPO K=2: F1") for line in lines)


def test_a_rerun_skips_finished_stages(toy_run):
    out, state, _ = toy_run
    lines: list[str] = []
    again = Recipe(toy_config(out, evaluate=True), log=lines.append).run()
    assert again["stages"] == state["stages"]
    assert all("done earlier" in line for line in lines) and len(lines) == len(state["stages"])
    # leaving out --evaluate (or adding it later) is not a change of the model's settings
    assert Recipe(toy_config(out, evaluate=False), log=lines.append).run()["stages"] == state["stages"]


def test_a_rerun_with_other_settings_is_refused_before_any_work(toy_run):
    out, _, _ = toy_run
    with pytest.raises(InputError, match="other settings.*hidden"):
        Recipe(toy_config(out, hidden=32))


def test_same_seed_gives_the_same_data_tokenizer_and_initial_weights(tmp_path):
    files = []
    for name in ("a", "b"):
        recipe = Recipe(toy_config(tmp_path / name, seed=3), log=lambda line: None)
        recipe.out.mkdir()
        recipe.data()
        recipe.base()
        files.append([(recipe.out / path).read_bytes() for path in
                      ("data/train.jsonl", "data/test/gsm8k.json", "base/tokenizer.json", "base/model.safetensors")])
    assert files[0] == files[1]


def test_command_line_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), "--hidden", "60", "--heads", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings: hidden (60) must divide by heads (8)")
    assert not (tmp_path / "r").exists()
