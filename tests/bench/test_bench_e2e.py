"""A tiny end-to-end run: the real scorer on the tiny random-weight model, through the benchmark commands.

The scores of a random-weight model are meaningless; what is checked is the plumbing: every step gets
K critiques with their P(Yes), records land in the predictions file, a rerun resumes, and re-scoring
from the file gives the run's own metric.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rprm_lite.bench import cli


@pytest.fixture
def tiny_model(request):
    try:
        import rprm_lite.scoring  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the scorer cannot be imported yet ({exc})")
    try:
        return request.getfixturevalue("tiny_gguf")  # from tests/conftest.py
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_gguf fixture (tests/conftest.py) is not there yet")


@pytest.mark.slow
def test_processbench_end_to_end_with_the_tiny_model(tmp_path, tiny_model, processbench_dir):
    out = tmp_path / "run"
    args = ["processbench", "--model", str(tiny_model), "--data", str(processbench_dir), "--subsets", "gsm8k",
            "--k", "2", "--max-tokens", "8", "--seed", "3", "--out", str(out)]
    first = CliRunner().invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["subset"], len(r["steps"])) for r in records] == [("gsm8k-0", "gsm8k", 3),
                                                                        ("gsm8k-1", "gsm8k", 2)]
    for record in records:
        for step in record["steps"]:
            assert len(step["p_yes"]) == 2 and len(step["critiques"]) == 2
            assert all(0.0 <= p <= 1.0 for p in step["p_yes"])
            assert step["score"] == pytest.approx(sum(step["p_yes"]) / 2)
    run = json.loads((out / "run.json").read_text())
    assert (run["config"]["k"], run["config"]["all_steps"], run["config"]["model"]) == (2, True, tiny_model.name)

    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0, again.output
    assert "0 scored, 2 already in" in again.stderr and again.stdout == first.stdout

    rescored = CliRunner().invoke(cli.app, ["metrics", "processbench", "--predictions", str(out / "predictions.jsonl"),
                                            "--data", str(processbench_dir), "--subsets", "gsm8k", "--json"])
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.stdout) == json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_prmbench_end_to_end_with_the_tiny_model(tmp_path, tiny_model, prmbench_dir):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.app, ["prmbench", "--model", str(tiny_model), "--data", str(prmbench_dir),
                                          "--subset400", "--k", "1", "--max-tokens", "4", "--out", str(out),
                                          "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["items"] == 1 and metrics["step_count_mismatches"]["count"] == 0
    counts = metrics["categories"]["circular"]
    assert counts["tp"] + counts["fp"] + counts["tn"] + counts["fn"] == 3  # every step labelled
