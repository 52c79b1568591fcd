"""Calibration: fitting (threshold, interval, map, calibration error) and applying the file in the runtime."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from rprm_lite import calibrate_command
from rprm_lite.calibrate_command import calibrate
from rprm_lite.calibration import ScoreMap, load_calibration
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.labelled import fit
from rprm_lite.labelled.processbench import ProcessBenchItem, evaluate
from rprm_lite.labelled.records import Prediction
from rprm_lite.model_file import inspect_model
from rprm_lite.scoring import Scorer

# item: (label, step scores). At thresholds in (0.3, 0.6] all four match (F1 100); the candidates there are
# the midpoint 0.45 only: the F1-optimal threshold is 0.45.
HAND_MADE = {"a": (-1, [0.9, 0.8]), "b": (1, [0.7, 0.3]), "c": (0, [0.2, 0.9]), "d": (-1, [0.6, 0.95])}


def processbench_pairs(table=HAND_MADE, subset="gsm8k"):
    return [(ProcessBenchItem(id=key, subset=subset, problem="q", steps=tuple("s" for _ in scores), label=label),
             Prediction(id=key, scores=tuple(scores))) for key, (label, scores) in table.items()]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_processbench_threshold_is_the_f1_optimal_midpoint():
    data = fit.processbench_data(processbench_pairs())
    assert fit.candidates(np.concatenate(data.scores)).tolist() == pytest.approx(
        [0.0, 0.25, 0.45, 0.65, 0.75, 0.85, 0.925, 0.975])
    assert fit.processbench_f1(data, np.array([0.25, 0.45, 0.65])).tolist() == pytest.approx(
        [200 / 3, 100.0, 200 / 3])
    assert fit.best_threshold(data) == pytest.approx((0.45, 100.0))
    for threshold in (0.0, 0.25, 0.45, 0.65, 0.85):  # the vectorized metric is the official one
        official = evaluate(processbench_pairs(), threshold)["average_f1"]
        assert fit.processbench_f1(data, np.array([threshold]))[0] == pytest.approx(official)


def test_ties_go_to_the_threshold_nearest_one_half():
    # every threshold in (0.2, 0.9] separates the steps; the candidates there are 0.55 (nearest 0.5) and more
    table = {"a": (0, [0.2]), "b": (-1, [0.9]), "c": (-1, [0.95])}
    assert fit.best_threshold(fit.processbench_data(processbench_pairs(table)))[0] == pytest.approx(0.55)


def test_prmbench_threshold_and_step_labels():
    from rprm_lite.labelled.prmbench import PRMBenchItem

    items = [PRMBenchItem(id="circular_0", classification="circular", question="q", steps=("a", "b", "c"),
                          error_steps=frozenset({3})),
             PRMBenchItem(id="circular_1", classification="circular", question="q", steps=("a", "b"),
                          error_steps=frozenset({1}))]
    predictions = [Prediction(id="circular_0", scores=(0.9, 0.7, 0.4)), Prediction(id="circular_1", scores=(0.1, 0.8))]
    data = fit.prmbench_data(list(zip(items, predictions, strict=True)))
    assert fit.best_threshold(data) == pytest.approx((0.55, 100.0))  # between 0.4 (wrong) and 0.7 (correct)
    scores, correct = fit.labelled_steps(data)
    assert scores.tolist() == [0.9, 0.7, 0.4, 0.1, 0.8] and correct.tolist() == [True, True, False, False, True]


def test_isotonic_and_platt_maps_and_calibration_error():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.8])
    correct = np.array([False, True, False, True, True, True])
    mapping = fit.fit_isotonic(scores, correct)  # pools (0.2, 0.3) at 0.5 and (0.4, 0.6, 0.8) at 1
    assert mapping.x == (0.1, 0.2, 0.3, 0.4, 0.8) and mapping.y == (0.0, 0.5, 0.5, 1.0, 1.0)
    assert mapping(0.25) == 0.5 and mapping(0.35) == pytest.approx(0.75) and mapping(0.05) == 0.0
    platt = fit.fit_platt(scores, correct)
    assert platt.a > 0 and 0 < platt(0.1) < platt(0.8) < 1
    # bins of width 0.1: |0 - .1|, |1 - .2|, |0 - .3|, |1 - .4|, |1 - .6|, |1 - .8| over 6 steps
    assert fit.expected_calibration_error(scores, correct) == pytest.approx((0.1 + 0.8 + 0.3 + 0.6 + 0.4 + 0.2) / 6)


def test_bootstrap_interval_is_seeded_and_holds_the_threshold():
    rng = np.random.default_rng(1)
    table = {}
    for n in range(60):
        label = -1 if n % 2 else 1
        first = rng.uniform(0.55, 1.0)
        table[f"i{n}"] = (label, [first, rng.uniform(0.55, 1.0) if label == -1 else rng.uniform(0.0, 0.45)])
    result = calibrate("processbench", processbench_pairs(table), score_map=None, draws=50, seed=3)
    again = calibrate("processbench", processbench_pairs(table), score_map=None, draws=50, seed=3)
    low, high = result["threshold_interval"]
    assert result == again and low <= result["threshold"] <= high and result["average_f1"] == 100.0


@pytest.fixture
def processbench_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    items = [{"id": key, "problem": "q", "steps": ["s"] * len(scores), "label": label}
             for key, (label, scores) in HAND_MADE.items()]
    (data / "gsm8k.json").write_text(json.dumps(items))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": key, "scores": scores}) + "\n"
                                   for key, (_, scores) in HAND_MADE.items()))
    return data, predictions


def test_calibrate_command_writes_the_file_and_the_diagram(processbench_files, small_bpe_gguf, tmp_path):
    data, predictions = processbench_files
    out = tmp_path / "out"
    result = run_cli("calibrate", predictions, "--data", data, "--subsets", "gsm8k", "--out", out,
                     "--model", small_bpe_gguf, "--map", "none", "--bootstrap", "20")
    assert result.returncode == 0, result.stderr
    assert "| threshold | 0.4500 (95% bootstrap " in result.stdout
    record = json.loads((out / "calibration.json").read_text())
    assert record["threshold"] == pytest.approx(0.45) and record["map"] is None
    assert record["model_sha256"] == inspect_model(small_bpe_gguf).sha256
    assert record["fit"]["benchmark"] == "processbench"
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    calibration = load_calibration(out / "calibration.json", model_sha256=record["model_sha256"])
    assert calibration.threshold == pytest.approx(0.45)
    missing = run_cli("calibrate", predictions, "--data", data, "--subsets", "gsm8k", "--out", out)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no run.json beside the predictions")


def test_without_matplotlib_calibrate_writes_the_file_and_says_how_to_get_the_diagram(processbench_files, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    data, predictions = processbench_files
    out = tmp_path / "out"
    result = CliRunner().invoke(calibrate_command.app, [str(predictions), "--data", str(data), "--subsets", "gsm8k",
                                                        "--out", str(out),
                                                        "--model-sha256", "ab" * 32, "--map", "none",
                                                        "--bootstrap", "5"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "calibration.json").read_text())["threshold"] == pytest.approx(0.45)
    assert not (out / "reliability.png").exists()
    assert result.stdout.endswith(f"\nwrote {out / 'calibration.json'}\n")
    assert result.stderr == ("reliability.png not drawn: the reliability diagram needs matplotlib; install it with: "
                             "pip install 'rprm-lite[bench]'\n")


def write_calibration(path, sha256, *, threshold=0.3, map_=None, settings=None):
    path.write_text(json.dumps({"format": "rprm-lite-calibration", "version": 1, "model_sha256": sha256,
                                "model": "m.gguf", "threshold": threshold, "map": map_, "settings": settings or {}}))
    return path


def test_scoring_with_a_calibration_maps_scores_and_uses_its_threshold(small_bpe_gguf, tmp_path):
    sha256 = inspect_model(small_bpe_gguf).sha256
    path = write_calibration(tmp_path / "c.json", sha256, map_={"kind": "isotonic", "x": [0, 1], "y": [0.2, 0.8]})
    config = ScoreConfig(k=2, max_tokens=3, seed=1, all_steps=True)
    with Scorer(small_bpe_gguf, config) as scorer:
        plain = scorer.score("What is 1+1?", ["1+1=2.", "So 2."])
    with Scorer(small_bpe_gguf, config.replace(calibration=str(path))) as scorer:
        calibrated = scorer.score("What is 1+1?", ["1+1=2.", "So 2."])
        assert scorer.config.threshold == 0.3
    for before, after in zip(plain.steps, calibrated.steps, strict=True):
        assert after.raw_score == before.score and after.score == pytest.approx(0.2 + 0.6 * before.score)
        assert after.verdict == ("wrong" if after.score < 0.3 else "correct")
    data = calibrated.to_dict()
    assert data["steps"][0]["raw_score"] == plain.steps[0].score and len(data["config"]["calibration_sha256"]) == 64


def test_a_calibration_for_another_model_or_malformed_is_refused(small_bpe_gguf, tmp_path):
    solution = tmp_path / "s.json"
    solution.write_text(json.dumps({"question": "What is 1+1?", "steps": ["1+1=2."]}))
    other = write_calibration(tmp_path / "other.json", "ab" * 32)
    result = run_cli("score", solution, "--model", small_bpe_gguf, "--calibration", other)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: --calibration {other} was made for another model (sha256 abababababab...")
    sha256 = inspect_model(small_bpe_gguf).sha256
    for name, text in [("bad.json", "{not json"), ("list.json", "[1, 2]"),
                       ("threshold.json", json.dumps({"format": "rprm-lite-calibration", "version": 1,
                                                      "model_sha256": sha256, "threshold": 2}))]:
        (tmp_path / name).write_text(text)
        result = run_cli("score", solution, "--model", small_bpe_gguf, "--calibration", tmp_path / name)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"error: --calibration {tmp_path / name}: ")
    with pytest.raises(InputError, match=r"fit on scores made with other settings \(k 10 there, 2 here\)"):
        Scorer(small_bpe_gguf, k=2, calibration=str(write_calibration(tmp_path / "k.json", sha256,
                                                                       settings={"k": 10})))
    both = run_cli("score", solution, "--model", small_bpe_gguf, "--calibration", other, "--threshold", "0.4")
    assert both.returncode == 1 and "--threshold and --calibration both set the threshold" in both.stderr


def test_platt_map_reads_back():
    mapping = ScoreMap("platt", a=4.0, b=-2.0)
    assert mapping(0.5) == 0.5 and mapping(1.0) == pytest.approx(1 / (1 + np.exp(-2)))
