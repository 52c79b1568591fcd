"""`rprm-lite data ...` and `rprm-lite train ...`: options generated from the config dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
import typer.main
from training_helpers import REPLIES, SOLUTIONS, write_jsonl
from typer.testing import CliRunner

from rprm_lite.training.cli import data_app, train_app
from rprm_lite.training.pairs import PairsConfig
from rprm_lite.training.seed_critiques import SeedConfig
from rprm_lite.training.train_config import DPORunConfig, SFTRunConfig

COMMANDS = [(data_app, "seed", SeedConfig), (data_app, "pairs", PairsConfig),
            (train_app, "sft", SFTRunConfig), (train_app, "dpo", DPORunConfig)]


@pytest.mark.parametrize(("app", "name", "config_class"), COMMANDS)
def test_every_config_field_is_one_option_and_nothing_else(app, name, config_class):
    command = typer.main.get_command(app).commands[name]
    options = {param.name: param for param in command.params}
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    assert options.keys() == fields.keys()
    for field_name, field in fields.items():
        option = options[field_name]
        assert option.opts == ["--" + field_name.replace("_", "-")]
        assert option.required == (field.default is dataclasses.MISSING)
        if not option.required:
            assert option.default == field.default


def test_seed_command_prints_the_report(tmp_path, stub_teacher):
    server = stub_teacher(REPLIES)
    solutions = write_jsonl(tmp_path / "solutions.jsonl", SOLUTIONS)
    out = tmp_path / "sft.jsonl"
    result = CliRunner().invoke(data_app, ["seed", "--solutions", str(solutions), "--teacher", server.url,
                                           "--teacher-model", "t", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"kept 4 of 7 critiques (7 new in this run); dropped: 1 empty, 1 no verdict, "
                             f"1 wrong verdict; written to {out}\n")


def test_train_sft_command_trains_and_reports(small_model_dir, seed_file, tmp_path):
    out = tmp_path / "sft"
    result = CliRunner().invoke(train_app, [
        "sft", "--model", str(small_model_dir), "--data", str(seed_file), "--out", str(out),
        "--batch-size", "2", "--micro-batch-size", "2", "--max-steps", "2", "--logging-steps", "1", "--lora",
        "--lora-r", "2"])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("trained 2 steps on 7 examples (0 skipped as too long); last loss ")
    assert last.endswith(f" tokens/s; checkpoint saved to {out}")
    assert (out / "model.safetensors").is_file()


def test_pairs_command_samples_and_reports(small_model_dir, tmp_path):
    solutions = write_jsonl(tmp_path / "solutions.jsonl", SOLUTIONS)
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(data_app, ["pairs", "--model", str(small_model_dir), "--solutions", str(solutions),
                                           "--out", str(out), "--k", "2", "--max-tokens", "3"])
    assert result.exit_code == 0, result.output
    # a random model writes no verdicts, so no step can give a pair
    assert result.stdout == (f"0 pairs from 7 steps (7 new in this run): 0 paired, 0 all agree, 0 all disagree, "
                             f"7 no verdict; written to {out}\n")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["sft", "--model", "m", "--data", "d", "--out", "o", "--micro-batch-size", "0", "--beta", "1"], 2,
     "No such option: --beta"),
    (["sft", "--model", "m", "--data", "d", "--out", "o", "--micro-batch-size", "0", "--lr-scheduler", "x"], 2,
     "error: invalid settings: micro-batch-size must be at least 1, got 0; lr-scheduler must be one of"),
    (["dpo", "--model", "no/such/folder", "--data", "d", "--out", "o"], 5,
     "error: no/such/folder: expected a Hugging Face checkpoint folder"),
])
def test_bad_options_are_one_line_errors(args, code, message):
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_main_cli_reaches_these_commands_lazily():
    from rprm_lite.cli import app

    result = CliRunner().invoke(app, ["train", "dpo", "--help"])
    assert result.exit_code == 0, result.output
    assert "--ref-model" in result.output and "--beta" in result.output
