"""`python -m rprm_lite.bench.score_speed --buffers`: the buffer-type rule's benchmark does the same work under
each setting, records where the weights went, and its ratios are the ones its raw figures give (no timing is
asserted: benchmarks are not tests)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from rprm_lite.bench import score_speed
from shared_paths import TINY_RPRM


def test_buffers_benchmark_compares_the_three_settings(tmp_path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        score_speed.main(["--buffers", "--model", str(TINY_RPRM), "--k", "2", "--tokens", "4",
                          "--threads", "1", "--repeats", "1", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "speed_buffers.json").read_text())
    runs = summary["runs"]
    assert list(runs) == ["auto", "on", "off"]
    assert len({run["generated_tokens"] for run in runs.values()}) == 1  # the same work under every setting
    assert runs["on"]["buffer_rule"].startswith("extra buffer types on (RPRM_EXTRA_BUFFERS=on")
    assert runs["off"]["buffer_rule"] == "extra buffer types off (RPRM_EXTRA_BUFFERS=off)"
    assert all(run["weight_buffers"] and "AMX" not in run["weight_buffers"] for run in (runs["auto"], runs["off"]))
    assert summary["off_vs_on"] == pytest.approx(runs["off"]["tokens_per_s"] / runs["on"]["tokens_per_s"])
    assert "| off | off | CPU" in printed.getvalue()
