"""`rprm-lite bench processbench|prmbench|metrics|sweep` through typer's test runner, with a fake scorer."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rprm_lite.bench import cli
from rprm_lite.config import ScoreConfig

PROCESSBENCH_TABLE = """ProcessBench (threshold 0.5)

| subset | error acc | correct acc | F1 | items |
|---|---|---|---|---|
| gsm8k | 100.0 | 0.0 | 0.0 | 2 |
| math | 100.0 | 100.0 | 100.0 | 2 |
| average |  |  | 50.0 | 4 |
"""


def invoke(*args: str):
    return CliRunner().invoke(cli.app, [str(a) for a in args])


@pytest.fixture
def scorers(monkeypatch, fake_scorer, processbench_p_yes, prmbench_p_yes):
    """Every scorer the commands make, each a fake that knows both hand-made benchmarks."""
    made = []

    def make(model, settings):
        made.append(fake_scorer({**processbench_p_yes, **prmbench_p_yes}, ScoreConfig(k=2).replace(**settings)))
        return made[-1]

    monkeypatch.setattr(cli, "make_scorer", make)
    return made


@pytest.fixture
def processbench_run(tmp_path, processbench_dir, scorers):
    out = tmp_path / "run"
    result = invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k,math", "--k", "2",
                    "--out", out)
    assert result.exit_code == 0, result.output
    return result, out


def test_processbench_scores_writes_and_prints_the_metric(processbench_run, scorers):
    result, out = processbench_run
    assert result.stdout == PROCESSBENCH_TABLE
    assert f"4 scored, 0 already in {out / 'predictions.jsonl'}" in result.stderr
    assert scorers[0].scored == ["gsm8k-0", "gsm8k-1", "math-0", "math-1"] and scorers[0].closed
    assert scorers[0].config.all_steps is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["average_f1"], metrics["subsets"]["gsm8k"]["correct_acc"]) == (50.0, 0.0)
    assert (out / "metrics.md").read_text() == PROCESSBENCH_TABLE
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4


def test_processbench_rerun_resumes_without_scoring_again(processbench_run, processbench_dir, scorers):
    _, out = processbench_run
    again = invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k,math", "--k", "2", "--out", out)
    assert again.exit_code == 0, again.output
    assert again.stdout == PROCESSBENCH_TABLE
    assert scorers[1].scored == []
    assert "0 scored, 4 already in" in again.stderr


def test_processbench_limit_takes_the_first_items_of_each_subset(tmp_path, processbench_dir, scorers):
    result = invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k,math", "--limit", "1",
                    "--out", tmp_path / "run")
    assert scorers[0].scored == ["gsm8k-0", "math-0"]
    assert result.exit_code == 0 and "| average |  |  | n/a | 2 |" in result.stdout  # no correct items


@pytest.mark.parametrize(("threshold", "average"), [("0.3", "100.0"), ("0.9", "0.0")])
def test_metrics_re_scores_at_another_threshold_without_the_model(processbench_run, processbench_dir,
                                                                 scorers, threshold, average):
    _, out = processbench_run
    result = invoke("metrics", "processbench", "--predictions", out / "predictions.jsonl", "--data",
                    processbench_dir, "--subsets", "gsm8k,math", "--threshold", threshold)
    assert result.exit_code == 0, result.output
    assert f"| average |  |  | {average} | 4 |" in result.stdout
    assert len(scorers) == 1  # only the run that made the predictions had a scorer


def test_metrics_accepts_other_prms_predictions(tmp_path, processbench_dir):
    predictions = tmp_path / "other.jsonl"
    predictions.write_text('{"id": "gsm8k-0", "prediction": 1}\n{"id": "gsm8k-1", "scores": [0.9, 0.8]}\n')
    result = invoke("metrics", "processbench", "--predictions", predictions, "--data", processbench_dir,
                    "--subsets", "gsm8k", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["subsets"]["gsm8k"] == {
        "error_acc": 100.0, "correct_acc": 100.0, "f1": 100.0, "error_items": 1, "correct_items": 1}


def test_metrics_below_an_early_stop_threshold_is_refused(tmp_path, processbench_dir, scorers):
    out = tmp_path / "early"
    assert invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k,math", "--early-stop",
                  "--out", out).exit_code == 0
    result = invoke("metrics", "processbench", "--predictions", out / "predictions.jsonl", "--data",
                    processbench_dir, "--subsets", "gsm8k,math", "--threshold", "0.2")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: 1 item(s) (e.g. gsm8k-0) were scored with early stop")


def test_sweep_writes_json_and_plots(processbench_run, processbench_dir, tmp_path):
    _, out = processbench_run
    result = invoke("sweep", "processbench", "--predictions", out / "predictions.jsonl", "--data",
                    processbench_dir, "--subsets", "gsm8k,math", "--out", tmp_path / "sweep", "--draws", "2")
    assert result.exit_code == 0, result.output
    assert "| 0.3 | 100.0 |" in result.stdout and "| 0.5 | 50.0 |" in result.stdout
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [row["average"] for row in sweep["threshold_sweep"]][:7] == [0, 0, 50, 50, 50, 100, 100]
    assert (sweep["k_scaling"]["recorded_k"], [r["k"] for r in sweep["k_scaling"]["rows"]]) == (2, [1, 2])
    for name in ("threshold.png", "k_scaling.png"):
        assert (tmp_path / "sweep" / name).read_bytes()[:4] == b"\x89PNG"


PRMBENCH_TABLE = """PRMBench PRMScore (correct when score > 0.5)

| category | abbr. | PRMScore | items |
|---|---|---|---|
| overall |  | 76.2 | 2 |
| simplicity |  | n/a |  |
|   circular | NCL | 100.0 | 1 |
| soundness |  | n/a |  |
| sensitivity |  | n/a |  |
|   multi_solutions | MS | 66.7 | 1 |
"""


def test_prmbench_scores_every_step_and_prints_prmscore(tmp_path, prmbench_dir, scorers):
    result = invoke("prmbench", "--data", prmbench_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.stdout == PRMBENCH_TABLE
    assert scorers[0].scored == ["circular_p0", "multi_solutions_p0"]  # the repeated idx is scored once
    assert scorers[0].config.all_steps is True


def test_prmbench_metrics_from_the_official_result_format(tmp_path, prmbench_dir):
    results = tmp_path / "results.jsonl"
    lines = [{"idx": "circular_p0", "scores": {"step_level_validity_scores": [0.9, 0.2, 0.8],
                                               "step_level_validity_labels": [True, False, False]}},
             {"idx": "multi_solutions_p0", "scores": {"step_level_validity_labels": [True, True]}},
             {"idx": "multi_solutions_p0", "scores": {"step_level_validity_labels": [False] * 4}}]
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = invoke("metrics", "prmbench", "--predictions", results, "--data", prmbench_dir, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert (metrics["categories"]["circular"]["tp"], metrics["categories"]["circular"]["fn"]) == (1, 1)
    assert metrics["categories"]["multi_solutions"]["prm_score"] == 100.0  # the first of the repeated idx
    rescored = invoke("metrics", "prmbench", "--predictions", results, "--data", prmbench_dir,
                      "--threshold", "0.5", "--json")
    assert json.loads(rescored.stdout)["categories"]["circular"]["prm_score"] == 100.0  # 0.8 > 0.5
    subset = invoke("metrics", "prmbench", "--predictions", results, "--data", prmbench_dir, "--subset400",
                    "--json")
    assert json.loads(subset.stdout)["items"] == 1


# -- bad input: one line on stderr, a non-zero exit, no traceback -----------------------------------
def test_missing_data_folder(tmp_path, scorers):
    result = invoke("processbench", "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'nowhere'}: no such folder; expected a folder")
    assert "Traceback" not in result.output and scorers == []


def test_missing_subset_file_is_named(processbench_dir, tmp_path, scorers):
    result = invoke("processbench", "--data", processbench_dir, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "missing olympiadbench.json, omnimath.json" in result.stderr


def test_bad_option_values_are_refused_before_any_work(processbench_dir, tmp_path, scorers):
    result = invoke("processbench", "--data", processbench_dir, "--k", "0", "--out", tmp_path / "run")
    assert (result.exit_code, result.stderr) == (2, "error: invalid settings: k must be at least 1, got 0\n")
    assert scorers == []


def test_empty_predictions_file(tmp_path, processbench_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = invoke("metrics", "processbench", "--predictions", empty, "--data", processbench_dir)
    assert (result.exit_code, result.stderr) == (
        2, f"error: {empty}: no predictions; expected one JSON object per line\n")


def test_predictions_for_ids_not_in_the_data(tmp_path, prmbench_dir):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"idx": "prm_test_p1_0", "scores": {"step_level_validity_labels": [true]}}\n')
    result = invoke("metrics", "prmbench", "--predictions", predictions, "--data", prmbench_dir)
    assert result.exit_code == 2
    assert "1 prediction(s) name ids not in the data (e.g. prm_test_p1_0)" in result.stderr


def test_step_count_beyond_the_item(tmp_path, processbench_dir):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"id": "gsm8k-1", "scores": [0.9, 0.8, 0.7]}\n{"id": "gsm8k-0", "prediction": 1}\n')
    result = invoke("metrics", "processbench", "--predictions", predictions, "--data", processbench_dir,
                    "--subsets", "gsm8k")
    assert result.exit_code == 2
    assert "gsm8k-1: 3 step scores for an item with 2 steps" in result.stderr


def test_resuming_with_other_settings_is_refused(processbench_run, processbench_dir):
    _, out = processbench_run
    result = invoke("processbench", "--data", processbench_dir, "--subsets", "gsm8k,math", "--k", "4",
                    "--out", out)
    assert result.exit_code == 2
    assert "other settings (k: 2 before, 4 now)" in result.stderr


def test_speed_suite_is_a_bench_command_and_passes_its_options_through():
    result = invoke("speed", "--help")
    assert result.exit_code == 0
    assert "--logit-scale" in result.output and "--n-gpu-layers" in result.output
    bad = invoke("speed", "--shape", "no-such-shape")
    assert bad.exit_code == 2 and "invalid choice" in bad.output


def test_verdict_mode_reaches_the_scorer_and_decides_resuming(tmp_path, processbench_dir, scorers):
    out = tmp_path / "run"
    args = ("processbench", "--data", processbench_dir, "--subsets", "gsm8k", "--out", out)
    assert invoke(*args, "--verdict", "released").exit_code == 0
    assert scorers[0].config.verdict == "released"
    assert json.loads((out / "run.json").read_text())["config"]["verdict"] == "released"
    again = invoke(*args)
    assert again.exit_code == 2 and "verdict: 'released' before, 'single-pass' now" in again.stderr
    prm = invoke("prmbench", "--data", processbench_dir, "--out", tmp_path / "prm", "--verdict", "two-pass")
    assert (prm.exit_code, prm.stderr) == (
        2, "error: invalid settings: verdict must be one of single-pass, released, got 'two-pass'\n")
