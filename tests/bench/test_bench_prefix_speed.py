"""`bench/prefix_speed.py` at its smallest: each way does the same work, gives the same results, and is reported.

Benchmarks are not tests, so nothing here asserts a timing: only that each way scored the same batch, that the
prompt tokens it did not decode are exactly the prefixes it put back, and that the report says so.
"""

from __future__ import annotations

import json

import pytest

from rprm_lite.bench.prefix_speed import SHAPE_7B, WAYS, batch, main, matmul_params, measure

SETTINGS = {"k": 2, "max_tokens": 4, "threads": 1, "all_steps": True, "seed": 0, "adaptive": False}


@pytest.mark.parametrize("adaptive", [False, True], ids=["k", "adaptive"])
def test_each_way_scores_the_same_batch_and_skips_only_the_prefixes_it_puts_back(small_bpe_gguf, adaptive):
    solutions = batch(2, 2)
    assert [s.id for s in solutions] == ["q0-s0", "q0-s1", "q1-s0", "q1-s1"]
    assert solutions[0].question == solutions[1].question != solutions[2].question
    assert not set(solutions[0].steps) & set(solutions[1].steps)  # a server's step cache could not answer one
    runs = measure(small_bpe_gguf, {**SETTINGS, "adaptive": adaptive}, solutions)
    assert set(runs) == set(WAYS) and all(run["identical"] for run in runs.values())
    off, memory, disk = (runs[way] for way in WAYS)
    assert len({run["generated_tokens"] for run in runs.values()}) == 1  # the same critiques each way
    total = off["prompt_tokens_decoded"]
    assert all(run["prompt_tokens_decoded"] + run["prompt_tokens_restored"] == total for run in runs.values())
    assert off["prompt_tokens_restored"] == 0 and 0 < memory["prompt_tokens_restored"] < disk["prompt_tokens_restored"]
    # memory: q0-s1 takes q0's question, q1-s0 the template, q1-s1 q1's question; disk: q0-s0 the template too
    assert (memory["cache"]["hits"], memory["cache"]["disk_hits"]) == (3, 0)
    assert (disk["cache"]["hits"], disk["cache"]["disk_hits"]) == (3, 1)
    assert all(len(run["first_step_s"]) == 4 and run["batch_s"] > 0 for run in runs.values())
    # the step-1 prompt is decoded before its critiques start: part of the step's latency
    assert all(0 < prompt < step for run in runs.values() for prompt, step in zip(run["prompt_s"],
                                                                                  run["first_step_s"], strict=True))


def test_the_report_names_every_way_and_the_projection_scales_by_the_weights(small_bpe_gguf, tmp_path):
    assert main(["--model", str(small_bpe_gguf), "--k", "2", "--tokens", "2", "--questions", "1", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "prefix_speed.json").read_text())
    [runs] = report["runs"].values()
    assert list(runs) == list(WAYS) and report["setup"]["k"] == 2
    table = (tmp_path / "prefix_speed.md").read_text()
    assert all(f"| {way} |" in table for way in WAYS) and "| yes |" in table and "| NO |" not in table
    assert matmul_params(SHAPE_7B) == 28 * (2 * 3584**2 + 2 * 3584 * 512 + 3 * 3584 * 18944)


def test_through_serve_each_way_is_a_fresh_server_and_the_result_lines_are_identical(small_bpe_gguf, tmp_path):
    pytest.importorskip("uvicorn", reason="the serve extra (pip install 'rprm-lite[serve]') is not installed")
    assert main(["--model", str(small_bpe_gguf), "--k", "2", "--tokens", "2", "--questions", "1", "--threads", "1",
                 "--serve-only", "--out", str(tmp_path)]) == 0
    [(label, runs)] = json.loads((tmp_path / "prefix_speed.json").read_text())["runs"].items()
    assert label.endswith(", serve") and list(runs) == list(WAYS) and all(run["identical"] for run in runs.values())
    table = (tmp_path / "prefix_speed.md").read_text()
    assert table.count(", serve | ") == 3 and "--prefix-cache off" in table
