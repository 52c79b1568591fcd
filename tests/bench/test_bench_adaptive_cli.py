"""Adaptive K options of `rprm-lite bench processbench|prmbench`, and `bench adaptive-study`, through typer's runner."""

from __future__ import annotations

import json

from test_bench_cli import invoke, scorers  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from rprm_lite import rerank_command
from rprm_lite.bench import cli


def test_processbench_passes_the_adaptive_settings_and_refuses_to_resume_without_them(
        tmp_path, processbench_dir, scorers):  # noqa: F811
    out = tmp_path / "run"
    result = invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k", "--k", "2", "--out", out,
                    "--adaptive", "--confidence", "0.9", "--wave", "1", "--adaptive-rule", "window")
    assert result.exit_code == 0, result.output
    config = scorers[0].config
    assert (config.adaptive, config.confidence, config.wave, config.adaptive_rule) == (True, 0.9, 1, "window")
    again = invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k", "--k", "2", "--out", out)
    assert again.exit_code == 2 and "adaptive: True before, False now" in again.output


def test_bad_adaptive_option_is_one_line(tmp_path, processbench_dir, scorers):  # noqa: F811
    result = invoke("processbench", "--data", processbench_dir, "--out", tmp_path / "run", "--adaptive",
                    "--confidence", "0.3")
    assert result.exit_code == 2 and scorers == []
    assert result.output.strip().splitlines() == [
        "error: invalid settings: confidence must be in (0.5, 1] (1 never stops early), got 0.3"]


def test_adaptive_study_needs_a_trace(tmp_path):
    result = invoke("adaptive-study", "--out", tmp_path)
    assert result.exit_code == 2 and "error: no trace to replay" in result.output


def test_adaptive_study_on_recorded_predictions(tmp_path, processbench_dir, scorers):  # noqa: F811
    out = tmp_path / "run"
    assert invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k,math", "--k", "2",
                  "--out", out).exit_code == 0
    result = invoke("adaptive-study", "--out", tmp_path / "study", "--processbench-predictions",
                    out / "predictions.jsonl", "--processbench-data", processbench_dir, "--subsets", "gsm8k,math",
                    "--permutations", "4", "--wave", "1")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "study" / "adaptive_study.json").read_text())
    trace = report["traces"][0]
    assert trace["k"] == 2 and trace["fixed_k_metric"] == trace["benchmark_code_metric"] == 50.0
    assert all(1 <= row["critiques_mean"] <= 2 for row in trace["rows"])


def test_bon_and_rerank_take_the_adaptive_options():
    for command in ("bon", "rerank"):
        app = cli.app if command == "bon" else rerank_command.app
        help_text = CliRunner().invoke(app, [command, "--help"] if command == "bon" else ["--help"]).output
        assert all(option in help_text for option in ("--adaptive", "--confidence", "--wave", "--adaptive-rule"))
