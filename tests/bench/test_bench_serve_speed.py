"""`bench/serve_speed.py` at its smallest on the tiny test model: both paths measured, the same results, a report.

Benchmarks are not tests, so nothing here asserts a timing: only that each measurement ran on the work it
was asked for and was reported.
"""

from __future__ import annotations

import json

import pytest

from shared_paths import TINY_RPRM

pytestmark = pytest.mark.slow
pytest.importorskip("fastapi")


def test_a_small_run_measures_both_paths_and_disconnects(tmp_path):
    from rprm_lite.bench.serve_speed import main

    main(["--model", str(TINY_RPRM), "--solutions", "1", "--rounds", "1", "--k", "2", "--max-tokens", "4",
          "--disconnects", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "serve_speed.json").read_text())
    overhead, disconnect = report["overhead"], report["disconnect"]
    assert overhead["solutions"] == 1 and overhead["results_differing"] == 0
    assert set(overhead["solutions_per_s"]) == {"in_process", "server", "server_stream"}
    assert all(value > 0 for value in overhead["solutions_per_s"].values())
    assert disconnect["disconnects"] == 1 and disconnect["max_s_to_free_engine"] > 0
    assert report["server_exit_code"] == 0 and report["setup"]["k"] == 2
    table = (tmp_path / "serve_speed.md").read_text()
    assert "| server, NDJSON stream |" in table and "| close to free engine |" in table
