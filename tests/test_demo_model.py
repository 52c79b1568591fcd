"""The demo R-PRM bundled with the package: it loads, says what it is, and judges the README's examples.

The examples in `examples/` carry `expected_first_error_step` when they hold an injected error; with the
default seed the model must find exactly that step, and no error in the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rprm_lite import metadata
from rprm_lite.model_file import bundled_model_path, inspect_model, resolve_model_path

pytest.importorskip("llama_cpp", reason="scoring needs llama-cpp-python")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_BYTES = 15 * 1024 * 1024


def example_solutions() -> list[dict]:
    single = json.loads((EXAMPLES / "solution.json").read_text(encoding="utf-8"))
    lines = (EXAMPLES / "solutions.jsonl").read_text(encoding="utf-8").splitlines()
    return [single] + [json.loads(line) for line in lines if line.strip()]


def test_the_package_bundles_a_small_trained_model_and_uses_it_by_default(monkeypatch):
    monkeypatch.delenv("RPRM_MODEL", raising=False)
    path = bundled_model_path()
    assert resolve_model_path(None) == path
    info = inspect_model(path)
    assert info.architecture == "qwen2" and info.size <= MAX_BYTES
    assert info.rprm[metadata.PROMPT_STYLE] == "r-prm-eval" and info.rprm[metadata.K] == 10
    assert "synthetic arithmetic" in info.description and "not a substitute for R-PRM-7B" in info.description
    assert (path.parent / "MODEL_CARD.md").is_file()


def test_examples_cover_right_solutions_and_caught_errors():
    solutions = example_solutions()
    expected = [s.get("expected_first_error_step") for s in solutions]
    assert None in expected and any(expected)
    assert expected[0] is not None  # the README's first command shows an error being caught


def test_the_demo_model_judges_every_example_as_the_readme_says():
    from rprm_lite.scoring import Scorer

    with Scorer(None) as scorer:  # the bundled model, its own defaults (K=10, seed 0)
        for solution in example_solutions():
            result = scorer.score(solution["question"], solution["steps"])
            assert result.first_error_step == solution.get("expected_first_error_step"), solution["id"]
            if result.first_error_step is None:
                assert all(step.score >= 0.5 for step in result.steps), solution["id"]


def test_score_command_without_a_model_option_uses_the_demo_model(monkeypatch):
    from typer.testing import CliRunner

    from rprm_lite.cli import app

    monkeypatch.delenv("RPRM_MODEL", raising=False)
    result = CliRunner().invoke(app, ["score", str(EXAMPLES / "solution.json"), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout.strip().splitlines()[-1])
    assert scored["first_error_step"] == example_solutions()[0]["expected_first_error_step"]
    assert scored["config"]["model"] == "rprm-demo.gguf"


def test_the_model_note_is_said_once_above_the_table_and_on_stderr_with_json(monkeypatch):
    from typer.testing import CliRunner

    from rprm_lite.cli import app

    monkeypatch.delenv("RPRM_MODEL", raising=False)
    table = CliRunner().invoke(app, ["score", str(EXAMPLES / "solution.json"), "--k", "1"])
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("note: model rprm-demo.gguf: rprm-lite demo R-PRM")
    assert table.output.count("note: model") == 1
    as_json = CliRunner().invoke(app, ["score", str(EXAMPLES / "solution.json"), "--k", "1", "--json"])
    assert as_json.exit_code == 0 and "note: model rprm-demo.gguf" in as_json.stderr
    assert "note" not in as_json.stdout
