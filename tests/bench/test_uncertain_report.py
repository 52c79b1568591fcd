"""The uncertain band on labelled data: undecided steps and the accuracy of the decided ones."""

import json

import pytest
from typer.testing import CliRunner

from rprm_lite.bench import cli
from rprm_lite.bench.uncertain_report import band_report
from rprm_lite.errors import InputError
from rprm_lite.labelled.processbench import ProcessBenchItem
from rprm_lite.labelled.records import Prediction

# item: (label, step scores); the labelled steps are those up to the first error
TABLE = {"a": (-1, [0.9, 0.8]), "b": (1, [0.7, 0.3]), "c": (0, [0.2, 0.9]), "d": (-1, [0.45, 0.95])}


def pairs():
    return [(ProcessBenchItem(id=key, subset="gsm8k", problem="q", steps=tuple("s" for _ in scores), label=label),
             Prediction(id=key, scores=tuple(scores))) for key, (label, scores) in TABLE.items()]


def test_band_report_counts_and_accuracies():
    block = band_report("processbench", pairs(), (0.4, 0.65), 0.5)
    # 7 labelled steps; d's 0.45 is wrong at the threshold but uncertain in the band
    assert block["labelled_steps"] == 7 and block["uncertain_steps"] == 1
    assert block["step_accuracy_at_threshold"] == pytest.approx(600 / 7) and block["step_accuracy_decided"] == 100.0
    assert block["verdicts"] == {"correct_steps": {"correct": 4, "uncertain": 1, "wrong": 0},
                                 "wrong_steps": {"correct": 0, "uncertain": 0, "wrong": 2}}
    with pytest.raises(InputError, match="must hold the threshold 0.5"):
        band_report("processbench", pairs(), (0.6, 0.8), 0.5)


def test_metrics_command_shows_the_band(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "gsm8k.json").write_text(json.dumps([{"id": key, "problem": "q", "steps": ["s"] * len(scores),
                                                  "label": label} for key, (label, scores) in TABLE.items()]))
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": k, "scores": s}) + "\n" for k, (_, s) in TABLE.items()))
    args = ["metrics", "processbench", "--predictions", predictions, "--data", data, "--subsets", "gsm8k"]
    result = CliRunner().invoke(cli.app, [*map(str, args), "--uncertain-band", "0.4,0.65", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["uncertain_band"]["uncertain_steps"] == 1
    table = CliRunner().invoke(cli.app, [*map(str, args), "--uncertain-band", "0.4,0.65"]).stdout
    assert "Uncertain band [0.4, 0.65)" in table and "| uncertain | 1 (14.3%) |" in table
    plain = CliRunner().invoke(cli.app, list(map(str, args))).stdout
    assert "Uncertain" not in plain and table.startswith(plain.rstrip("\n"))
    bad = CliRunner().invoke(cli.app, [*map(str, args), "--uncertain-band", "0.6,0.8"])
    assert bad.exit_code == 2 and "error: uncertain_band 0.6,0.8 must hold the threshold 0.5" in bad.output
