"""Predictions files and the scoring loop: append as you go, resume after a kill, refuse mixed settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rprm_lite.bench.harness import run_items
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.jsonl import JsonlWriter
from rprm_lite.labelled import processbench as pb
from rprm_lite.labelled.records import Prediction, read_records


def test_read_records_ignores_a_cut_off_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "ste')
    assert read_records(path) == [{"id": "a"}, {"id": "b"}]


def test_read_records_rejects_a_broken_line_in_the_middle(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(InputError, match="p.jsonl line 2: invalid JSON"):
        read_records(path)
    path.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match="line 2: expected a JSON object, got list"):
        read_records(path)
    with pytest.raises(InputError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_writer_trims_a_cut_off_line_before_appending(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "sc')
    with JsonlWriter(path) as writer:
        writer.write({"id": "b"})
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def items(processbench_dir):
    return [i.bench_item() for i in pb.load_processbench(processbench_dir, ["gsm8k", "math"])]


def test_run_items_writes_one_record_per_item_with_scores_and_p_yes(tmp_path, processbench_dir, fake_scorer,
                                                                    processbench_p_yes):
    scorer = fake_scorer(processbench_p_yes)
    summary = run_items(items(processbench_dir), scorer, tmp_path / "out", benchmark="processbench")
    assert (summary.scored, summary.resumed) == (4, 0)
    first = read_records(tmp_path / "out" / "predictions.jsonl")[0]
    assert first["id"] == "gsm8k-0" and first["subset"] == "gsm8k"
    assert [s["score"] for s in first["steps"]] == [0.875, 0.25, 0.625]
    assert first["steps"][1]["p_yes"] == [0.25, 0.25]
    assert first["steps"][1]["critiques"] == ["critique 0", "critique 1"]
    assert first["first_error_step"] == 2
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (run["benchmark"], run["config"]["k"], run["config"]["model"]) == ("processbench", 2, "fake.gguf")


def test_resume_after_a_kill_scores_only_what_is_missing(tmp_path, processbench_dir, fake_scorer,
                                                         processbench_p_yes):
    out = tmp_path / "out"
    run_items(items(processbench_dir)[:2], fake_scorer(processbench_p_yes), out, benchmark="processbench",
              critiques=False)
    path = out / "predictions.jsonl"
    with path.open("a") as file:  # a killed run: half of the third record
        file.write('{"id": "math-0", "subset": "math", "steps": [{"sco')
    scorer = fake_scorer(processbench_p_yes)
    summary = run_items(items(processbench_dir), scorer, out, benchmark="processbench", critiques=False)
    assert scorer.scored == ["math-0", "math-1"]
    assert (summary.scored, summary.resumed) == (2, 2)
    assert [r["id"] for r in read_records(path)] == ["gsm8k-0", "gsm8k-1", "math-0", "math-1"]
    assert [r["id"] for r in summary.records] == ["gsm8k-0", "gsm8k-1", "math-0", "math-1"]
    assert "critiques" not in summary.records[0]["steps"][0]


def test_resume_refuses_other_settings(tmp_path, processbench_dir, fake_scorer, processbench_p_yes):
    out = tmp_path / "out"
    run_items(items(processbench_dir)[:1], fake_scorer(processbench_p_yes), out, benchmark="processbench")
    other = fake_scorer(processbench_p_yes, ScoreConfig(k=4, all_steps=True))
    with pytest.raises(InputError, match="other settings \\(k: 2 before, 4 now\\).*another --out"):
        run_items(items(processbench_dir), other, out, benchmark="processbench")
    early = fake_scorer(processbench_p_yes, ScoreConfig(k=2, all_steps=False))
    with pytest.raises(InputError, match="all_steps: True before, False now"):
        run_items(items(processbench_dir), early, out, benchmark="processbench")
    assert other.scored == [] and early.scored == []


def test_with_k_subsamples_recorded_critiques_reproducibly():
    prediction = Prediction(id="x", scores=(0.5, None), p_yes=((0.0, 1.0, 1.0, 1.0), ()), first_error=1)
    one = prediction.with_k(1, np.random.default_rng(7))
    assert one.scores[0] in (0.0, 1.0) and one.scores[1] is None and one.first_error is None
    assert one == prediction.with_k(1, np.random.default_rng(7))
    assert prediction.with_k(4, np.random.default_rng(7)).scores == (0.75, None)
    with pytest.raises(InputError, match="a step has 4 critiques, fewer than K=8"):
        prediction.with_k(8, np.random.default_rng(7))
    with pytest.raises(InputError, match="no per-critique p_yes"):
        Prediction(id="y", scores=(0.5,)).with_k(1, np.random.default_rng(7))
