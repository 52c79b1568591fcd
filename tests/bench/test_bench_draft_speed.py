"""`bench/draft_speed.py` at its smallest: both ways score the same solutions, and the report says what they did.

Benchmarks are not tests, so nothing here asserts a timing."""

from __future__ import annotations

import json

from rprm_lite.bench.draft_speed import main


def test_both_ways_score_the_same_steps_and_the_report_names_them(small_bpe_gguf, tmp_path):
    assert main(["--model", str(small_bpe_gguf), "--k", "1", "2", "--draft", "4", "--max-tokens", "8",
                 "--examples", "examples/solution.json", "--first", "0", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "draft_speed.json").read_text())
    assert list(report["runs"]) == [f"{small_bpe_gguf.name}, K=1", f"{small_bpe_gguf.name}, K=2"]
    for measured in report["runs"].values():
        off, on = measured["runs"]["off"], measured["runs"]["on"]
        assert off["steps"] == on["steps"] == 4 and off["tokens"] > 0 and on["tokens"] > 0  # every step scored
        assert off["drafts"]["drafted"] == 0 and measured["config"]["draft"] == "4"
        assert measured["steps_compared"] == 4 and measured["tokens_per_advance"] >= 1
    table = (tmp_path / "draft_speed.md").read_text()
    assert table.count("| off | 4 |") == 2 and table.count("| 4 | 4 |") == 2  # draft, then steps
