"""A converted (and quantized) checkpoint runs through the runtime: the Scorer API and `rprm-lite score`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rprm_lite.config import ScoreConfig
from rprm_lite.convert.converter import ConvertConfig, convert

scoring = pytest.importorskip("rprm_lite.scoring", reason="the runtime's Scorer is not in this checkout yet")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "solution.json"
QUESTION = "Natalia sold 48 clips in April and half as many in May. How many clips did she sell in total?"
STEPS = ["In May she sold 48 / 2 = 24 clips.", "In total she sold 48 + 24 = 72 clips."]


@pytest.fixture(scope="module")
def converted_q8(tmp_path_factory, qwen2_checkpoint) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "r-prm-random.Q8_0.gguf"
    convert(ConvertConfig(source=str(qwen2_checkpoint), output=out, quant="Q8_0", prompt_style="chatml"))
    return out


def test_scorer_scores_every_step_of_a_converted_model(converted_q8):
    config = ScoreConfig(k=2, max_tokens=6, all_steps=True, seed=3, prompt_style="chatml")
    with scoring.Scorer(converted_q8, config=config) as scorer:
        result = scorer.score(QUESTION, STEPS)
    assert [step.index for step in result.steps] == [1, 2]
    for step in result.steps:
        assert len(step.p_yes) == 2 and all(0.0 <= p <= 1.0 for p in step.p_yes)
        assert step.score == pytest.approx(sum(step.p_yes) / 2)
        assert step.generated_tokens > 0


def test_scorer_takes_its_defaults_from_the_converted_metadata(converted_q8):
    with scoring.Scorer(converted_q8, max_tokens=4, k=1) as scorer:
        assert scorer.config.prompt_style == "chatml"  # written by the converter as rprm.prompt_style
        assert (scorer.config.temperature, scorer.config.top_p, scorer.config.threshold) == (0.95, 0.95, 0.5)


def test_rprm_lite_score_cli_on_a_converted_model(converted_q8):
    pytest.importorskip("rprm_lite.cli")
    command = [sys.executable, "-m", "rprm_lite.cli", "score", str(EXAMPLE), "--model", str(converted_q8),
               "--k", "2", "--max-tokens", "4", "--all-steps", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])
    steps = json.loads(EXAMPLE.read_text())["steps"]
    assert [step["index"] for step in result["steps"]] == list(range(1, len(steps) + 1))
    assert all(0.0 <= step["score"] <= 1.0 for step in result["steps"])
    assert result["config"]["prompt_style"] == "chatml"


def test_main_cli_runs_the_convert_command(tmp_path, small_checkpoint):
    pytest.importorskip("rprm_lite.cli")
    out = tmp_path / "m.gguf"
    ok = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "convert", str(small_checkpoint), "-o", str(out),
                         "--outtype", "f32"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"wrote {out} (Qwen2ForCausalLM, f32, 26 tensors")
    bad = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "convert", str(small_checkpoint), "-o",
                          str(tmp_path / "q.gguf"), "--quant", "Q9"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 5
    assert bad.stderr.startswith("error: unknown quantization type 'Q9'; valid types: Q8_0, Q6_K")
    assert "Traceback" not in bad.stderr and not (tmp_path / "q.gguf").exists()
