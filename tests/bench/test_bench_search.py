"""`python -m rprm_lite.bench.search` on the tiny model as policy and judge, M=2: the report's shape, the records
it resumes from, and the paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rprm_lite.bench import search
from shared_paths import TINY_RPRM

TINY = ["--policy", str(TINY_RPRM), "--model", str(TINY_RPRM), "--k", "2", "--max-tokens", "8", "--threads", "1",
        "--max-steps", "2", "--step-tokens", "6", "--ns", "2"]


def problems(tmp_path: Path) -> Path:
    path = tmp_path / "gsm8k.json"
    path.write_text(json.dumps([
        {"id": "p1", "problem": "What is 2 + 3?", "steps": ["2 + 3 = 5. The answer is 5."], "trace": {"answer": 5}},
        {"id": "p2", "problem": "What is 1 + 1?", "reference_answer": "2"},
        {"id": "p3", "problem": "not read: beyond --limit", "reference_answer": "0"}]))
    return path


def test_the_benchmark_reports_every_run_and_resumes_from_its_records(tmp_path, capsys):
    out = tmp_path / "out"
    assert search.main(["--data", str(problems(tmp_path)), "--limit", "2", "--out", str(out), *TINY]) == 0
    report = json.loads((out / "search.json").read_text())
    assert report["problems"] == 2
    assert list(report["summary"]["runs"]) == ["greedy", "majority@2", "best-of-n@2", "guided@2"]
    for row in report["summary"]["runs"].values():
        assert 0 <= row["accuracy"] <= 100 and row["mean_policy_tokens"] > 0
    assert report["summary"]["runs"]["majority@2"]["mean_critiques"] == 0
    assert report["summary"]["runs"]["guided@2"]["mean_critiques"] > 0
    assert set(report["summary"]["comparisons"]) == {"guided@2 - majority@2", "guided@2 - greedy"}
    assert "| run | accuracy % |" in (out / "search.md").read_text() and report["peak_rss_mib"] > 0
    records = (out / search.RECORDS).read_text().splitlines()
    assert len(records) == 8
    capsys.readouterr()
    assert search.main(["--data", str(problems(tmp_path)), "--limit", "2", "--out", str(out), *TINY]) == 0
    assert "right" not in capsys.readouterr().err  # every problem came from the records
    assert json.loads((out / "search.json").read_text())["summary"] == report["summary"]
    assert search.main(["--data", str(problems(tmp_path)), "--limit", "2", "--out", str(out), *TINY,
                        "--step-tokens", "5"]) == 2  # other settings: refused, the records are kept
    assert len((out / search.RECORDS).read_text().splitlines()) == 8


def test_paired_bootstrap_of_identical_runs_is_zero_and_of_a_clear_gap_excludes_zero():
    assert search.paired_bootstrap([True, False] * 10, [True, False] * 10) == (0.0, 0.0, 0.0)
    points, low, high = search.paired_bootstrap([True] * 30, [False] * 10 + [True] * 20)
    assert points == pytest.approx(100 / 3) and 0 < low <= points <= high
