"""Calibration with LoRA adapters: the file records the model and the adapters it was fit on (sha256 and scale),
and is applied to that model with those adapters only; so the demo model (a base plus its bundled adapter),
the default model, can be calibrated.

`rprm-lite calibrate` reads the adapters from the run.json `rprm-lite bench` writes (the result config's
`lora`), or from --model and --lora; a file fit with other adapters, or with the same adapter at another scale,
or none, is one `error:` line (exit 2) before the model loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
from gguf_craft import write_adapter

from rprm_lite.adapter_file import load_model_info
from rprm_lite.calibration import load_calibration
from rprm_lite.errors import InputError
from rprm_lite.model_file import bundled_adapter_path, inspect_model
from rprm_lite.scorer import resolve_settings
from rprm_lite.scoring import Scorer

# item: (label, step scores); at thresholds in (0.3, 0.6] all four match: the threshold is 0.45
HAND_MADE = {"a": (-1, [0.9, 0.8]), "b": (1, [0.7, 0.3]), "c": (0, [0.2, 0.9]), "d": (-1, [0.6, 0.95])}
SOLUTION = {"question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "So the answer is 6."]}


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RPRM_MODEL"}
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def fit_files(folder: Path, run_config: dict | None) -> tuple[Path, Path]:
    """Labelled ProcessBench data and predictions, with a run.json of `run_config` beside them when given."""
    data = folder / "data"
    data.mkdir(parents=True)
    (data / "gsm8k.json").write_text(json.dumps([{"id": key, "problem": "q", "steps": ["s"] * len(scores),
                                                  "label": label} for key, (label, scores) in HAND_MADE.items()]))
    predictions = folder / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": key, "scores": scores}) + "\n"
                                   for key, (_, scores) in HAND_MADE.items()))
    if run_config is not None:
        (folder / "run.json").write_text(json.dumps({"benchmark": "processbench", "config": run_config}))
    return data, predictions


def calibrate(folder: Path, data: Path, predictions: Path, *extra) -> subprocess.CompletedProcess:
    return run_cli("calibrate", predictions, "--data", data, "--subsets", "gsm8k", "--out", folder / "out",
                   "--map", "none", "--bootstrap", "10", *extra)


def zero_adapter(path: Path, base: Path) -> Path:
    info = inspect_model(base)
    return write_adapter(path, architecture=info.architecture, target="blk.0.attn_q.weight",
                         dims=info.tensor_dims["blk.0.attn_q.weight"], rank=32,
                         types=(gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F32))


def test_the_demo_model_is_calibrated_and_its_calibration_applies_to_it_alone(demo_base, tmp_path):
    with Scorer(threads=1) as scorer:  # the demo, as `rprm-lite bench` runs it: its run.json records the adapter
        run_config = scorer.run_metadata()
    [bundled] = run_config["lora"]
    data, predictions = fit_files(tmp_path, run_config)
    fitted = calibrate(tmp_path, data, predictions)
    assert fitted.returncode == 0, fitted.stderr
    path = tmp_path / "out" / "calibration.json"
    record = json.loads(path.read_text())
    assert record["model_sha256"] == inspect_model(demo_base).sha256
    assert record["lora"] == [bundled] and bundled["file"] == "rprm-demo-adapter.gguf" and bundled["scale"] == 1.0

    solution = tmp_path / "solution.json"
    solution.write_text(json.dumps(SOLUTION))
    scored = run_cli("score", solution, "--calibration", path, "--max-tokens", 8, "--threads", 1, "--json")
    assert scored.returncode == 0, scored.stderr
    config = json.loads(scored.stdout)["config"]
    assert config["threshold"] == pytest.approx(0.45) and config["lora"] == [bundled]
    assert config["calibration_sha256"] == load_calibration(path).sha256
    # the demo's own base and adapter, named: the same model
    assert resolve_settings(load_model_info(demo_base, bundled_adapter_path()), None,
                            {"calibration": str(path)})[1] is not None

    extra = zero_adapter(tmp_path / "extra.gguf", demo_base)
    fit_with = (f"--calibration {path} was fit with LoRA adapter(s) rprm-demo-adapter.gguf (sha256 "
                f"{bundled['sha256'][:12]}..., scale 1), but this model runs with ")
    for args, runs_with in [
        (("--model", demo_base), "no LoRA adapter"),
        (("--model", demo_base, "--lora", f"{bundled_adapter_path()}:0.5"),
         f"LoRA adapter(s) rprm-demo-adapter.gguf (sha256 {bundled['sha256'][:12]}..., scale 0.5)"),
        (("--lora", extra), f"LoRA adapter(s) rprm-demo-adapter.gguf (sha256 {bundled['sha256'][:12]}..., scale 1), "
                            "extra.gguf (sha256 "),
    ]:
        refused = run_cli("score", solution, "--calibration", path, *args)
        assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
        assert refused.stderr.startswith(f"error: {fit_with}{runs_with}") and refused.stderr.count("\n") == 1
        assert refused.stderr.endswith("adapters and their scales change the scores: fit one for these with "
                                       "`rprm-lite calibrate`\n")


def test_calibrate_takes_the_adapters_from_the_options_when_there_is_no_run_json(small_bpe_gguf, tmp_path):
    lora = zero_adapter(tmp_path / "zero.gguf", small_bpe_gguf)
    data, predictions = fit_files(tmp_path, None)
    fitted = calibrate(tmp_path, data, predictions, "--model", small_bpe_gguf, "--lora", f"{lora}:0.5")
    assert fitted.returncode == 0, fitted.stderr
    path = tmp_path / "out" / "calibration.json"
    adapter = load_model_info(small_bpe_gguf, f"{lora}:0.5").adapters[0]
    assert json.loads(path.read_text())["lora"] == [adapter.record()]
    with Scorer(small_bpe_gguf, lora=(lora, 0.5), calibration=str(path), k=2, max_tokens=4, threads=1) as scorer:
        assert scorer.config.threshold == pytest.approx(0.45)
        assert scorer.score(SOLUTION["question"], SOLUTION["steps"]).config["lora"] == [adapter.record()]
    for lora_arg in ((lora, 1.0), None):
        with pytest.raises(InputError, match="fit with LoRA adapter"):
            Scorer(small_bpe_gguf, lora=lora_arg, calibration=str(path), k=2, threads=1)
    alone = calibrate(tmp_path, data, predictions, "--model", small_bpe_gguf, "--out", tmp_path / "plain")
    assert alone.returncode == 0, alone.stderr
    assert "lora" not in json.loads((tmp_path / "plain" / "calibration.json").read_text())  # as before


def test_calibrate_refuses_adapters_other_than_the_predictions_were_made_with(small_bpe_gguf, tmp_path):
    lora = zero_adapter(tmp_path / "zero.gguf", small_bpe_gguf)
    adapter = load_model_info(small_bpe_gguf, lora).adapters[0]
    data, predictions = fit_files(tmp_path, {"model_sha256": inspect_model(small_bpe_gguf).sha256,
                                             "model": small_bpe_gguf.name, "lora": [adapter.record()]})
    for args, message in [
        (("--model", small_bpe_gguf), "the predictions were made with LoRA adapter(s) zero.gguf (sha256 "),
        (("--model", small_bpe_gguf, "--lora", f"{lora}:2"), "not LoRA adapter(s) zero.gguf"),
        (("--lora", lora), "--lora needs --model"),
    ]:
        refused = calibrate(tmp_path, data, predictions, *args)
        assert (refused.returncode, refused.stderr.count("\n")) == (2, 1), refused.stderr
        assert message in refused.stderr
    assert not (tmp_path / "out" / "calibration.json").exists()
    bad = dict(json.loads((tmp_path / "run.json").read_text()))
    bad["config"]["lora"] = [{"file": "x", "sha256": "ab" * 32, "scale": int("9" * 400)}]
    (tmp_path / "run.json").write_text(json.dumps(bad))
    refused = calibrate(tmp_path, data, predictions)
    assert refused.returncode == 2 and refused.stderr.startswith(
        f"error: {tmp_path / 'run.json'}: config: 'lora' adapter 1 must be an object with 'file'")
