"""`rprm-lite score --adaptive ...` as a user runs it: in a subprocess, asserting its output."""

import json

from test_cli import run, solutions_file

FAST = ["--k", "4", "--max-tokens", "3", "--seed", "3", "--all-steps"]


def test_adaptive_json_reports_critiques_used_and_why_it_stopped(tiny_gguf, tmp_path):
    # threshold 0: every value is at least 0, so the beta rule settles each step after its first wave
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--threshold", "0",
                 "--adaptive", "--wave", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(s["critiques_used"], s["stop_reason"], len(s["p_yes"])) for s in data["steps"]] == [(3, "settled", 3)] * 2
    assert {k: data["config"][k] for k in ("adaptive", "confidence", "wave", "adaptive_rule")} == {
        "adaptive": True, "confidence": 0.8, "wave": 3, "adaptive_rule": "beta"}


def test_a_results_file_made_without_adaptive_is_not_resumed_with_it(tiny_gguf, tmp_path):
    out = tmp_path / "results.jsonl"
    assert run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "-o", out).returncode == 0
    again = run("score", solutions_file(tmp_path, 2), "--model", tiny_gguf, *FAST, "-o", out, "--adaptive")
    assert again.returncode == 2
    assert "adaptive: False before, True now" in again.stderr and "Traceback" not in again.stderr


def test_bad_adaptive_options_are_one_line_errors(tmp_path):
    for args, message in ((["--confidence", "0.3"], "confidence must be in (0.5, 1]"),
                          (["--wave", "0"], "wave must be between 1 and 255"),
                          (["--adaptive-rule", "vote"], "adaptive_rule must be one of beta, betting, window")):
        result = run("score", solutions_file(tmp_path, 1), "--adaptive", *args)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_adaptive_table_shows_the_critiques_drawn(tiny_gguf, tmp_path):
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--threshold", "0",
                 "--adaptive", "--wave", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines.index("step  score  verdict     critiques  text")
    first, second = lines[header + 1], lines[header + 2]
    assert first.startswith("   1  ") and first[13:] == "correct             2  0 + 1 = 1."
    assert second[13:] == "correct             2  The answer is 1."
