"""The `rprm-lite` command line, run as a user runs it: in a subprocess, asserting its output."""

import json
import subprocess
import sys

import pytest

FAST = ["--k", "2", "--max-tokens", "3", "--seed", "3"]


def run(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300, env=env)


def solutions_file(tmp_path, count=3, name="solutions.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": f"s{i}", "question": f"What is {i} + 1?",
                                        "steps": [f"{i} + 1 = {i + 1}.", f"The answer is {i + 1}."]}) + "\n"
                            for i in range(count)))
    return path


def test_score_json_has_the_documented_fields(tiny_gguf, tmp_path):
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--json", "--all-steps",
                 "--show-critiques")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["id"] == "s0" and len(data["steps"]) == 2
    step = data["steps"][0]
    assert step["index"] == 1 and step["verdict"] in ("correct", "wrong") and len(step["p_yes"]) == 2
    assert step["fallbacks"] == 2 and step["generated_tokens"] <= 6 and len(step["critiques"]) == 2
    assert set(data) >= {"steps", "first_error_step", "solution_score", "config"}
    config = data["config"]
    assert (config["k"], config["temperature"], config["top_p"], config["max_tokens"], config["seed"]) == (
        2, 0.95, 0.95, 3, 3)
    assert config["prompt_style"] == "r-prm-eval" and config["model"] == tiny_gguf.name
    assert len(config["model_sha256"]) == 64


def test_score_table_output_and_model_from_environment(tiny_gguf, tmp_path):
    env = {**__import__("os").environ, "RPRM_MODEL": str(tiny_gguf)}
    result = run("score", solutions_file(tmp_path, 1), *FAST, "--threshold", "0", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-4].startswith("solution s0: all 2 scored steps look correct; solution score ")
    assert lines[-3].split() == ["step", "score", "verdict", "text"]
    assert lines[-2].split()[0] == "1" and lines[-2].split()[2:] == ["correct", "0", "+", "1", "=", "1."]


def test_stdin_and_processbench_item(tiny_gguf):
    item = {"id": "gsm8k-x", "problem": "What is 1+1?", "steps": ["1+1=2."], "label": -1}
    result = run("score", "-", "--model", tiny_gguf, *FAST, "--json", stdin=json.dumps(item))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "gsm8k-x"


def test_output_file_resumes_and_repairs_a_cut_last_line(tiny_gguf, tmp_path):
    source, out = solutions_file(tmp_path, 3), tmp_path / "out.jsonl"
    first = run("score", source, "--model", tiny_gguf, *FAST, "--output", out)
    assert first.returncode == 0, first.stderr
    lines = out.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["s0", "s1", "s2"]
    out.write_text(lines[0] + "\n" + lines[1][:40])  # s1 was cut off mid-write by a killed run
    again = run("score", source, "--model", tiny_gguf, *FAST, "--output", out)
    assert again.returncode == 0, again.stderr
    assert "skipping 1 solution(s) already in" in again.stderr
    kept = out.read_text().splitlines()
    assert kept[0] == lines[0] and [json.loads(line)["id"] for line in kept] == ["s0", "s1", "s2"]
    assert json.loads(kept[1]) == json.loads(lines[1])  # same seed, same result
    done = run("score", source, "--model", tiny_gguf, *FAST, "--output", out)
    assert done.returncode == 0 and "nothing left to score" in done.stderr


def test_verdict_mode_is_recorded_and_a_rerun_in_the_other_mode_is_refused(tiny_gguf, tmp_path):
    source, out = solutions_file(tmp_path, 1), tmp_path / "out.jsonl"
    first = run("score", source, "--model", tiny_gguf, *FAST, "--verdict", "released", "--json", "--output", out)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["config"]["verdict"] == "released"
    again = run("score", source, "--model", tiny_gguf, *FAST, "--output", out)
    assert again.returncode == 2 and "verdict: 'released' before, 'single-pass' now" in again.stderr


def test_a_results_file_made_without_the_calculator_is_not_resumed_with_it(tiny_gguf, tmp_path):
    source, out = solutions_file(tmp_path, 1), tmp_path / "out.jsonl"
    first = run("score", source, "--model", tiny_gguf, *FAST, "--output", out)
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    again = run("score", source, "--model", tiny_gguf, *FAST, "--calculator", "on", "--output", out)
    assert again.returncode == 2 and "calculator: 'off' before, 'on' now" in again.stderr
    assert out.read_bytes() == before  # left as it was
    bad = run("score", source, "--model", tiny_gguf, "--calculator", "maybe")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "calculator" in bad.stderr


def test_prompt_command_prints_exact_bytes(tmp_path):
    from rprm_lite.prompt import render_text
    from rprm_lite.solution import read_solutions

    source = solutions_file(tmp_path, 2)
    result = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "prompt", str(source), "--step", "2",
                             "--id", "s1", "--prompt-style", "chatml"], capture_output=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == render_text(read_solutions(source)[1], 1, "chatml").encode()


def test_info_shows_build_model_and_defaults(tiny_gguf):
    result = run("info", "--model", tiny_gguf)
    assert result.returncode == 0, result.stderr
    assert "llama-cpp-python 0.3." in result.stdout and "architecture: qwen2" in result.stdout
    assert "settings: k=10, temperature=0.95, top_p=0.95, max_tokens=4096" in result.stdout


@pytest.mark.parametrize("content, args, code, message", [
    (None, [], 2, "missing.json: no such file"),
    ('{"question": "Q", "steps": ["a"]}\nnot json\n', [], 2, "line 2: invalid JSON"),
    ('{"problem": "Q"}', [], 2, "missing 'steps'"),
    ('{"question": "Q", "steps": []}', [], 2, "'steps' is empty"),
    ('{"question": "Q", "steps": [1]}', [], 2, "step 1 must be a string, got int"),
    ('{"question": "Q", "steps": [""]}', [], 2, "step 1 is empty"),
    ('{"question": "Q", "steps": ["a"]}', ["--k", "0"], 2, "k must be at least 1, got 0"),
    ('{"question": "Q", "steps": ["a"]}', ["--temperature", "-1"], 2, "temperature must be >= 0"),
    ('{"question": "Q", "steps": ["a"]}', ["--top-p", "0"], 2, "top_p must be in (0, 1], got 0.0"),
    ('{"question": "Q", "steps": ["a"]}', ["--threshold", "1.5"], 2, "threshold must be in [0, 1], got 1.5"),
    ('{"question": "Q", "steps": ["a"]}', ["--model", "nowhere.gguf"], 2, "nowhere.gguf: model file not found"),
    ('{"question": "Q", "steps": ["a"]}', ["--verdict", "two-pass"], 2,
     "verdict must be one of single-pass, released, got 'two-pass'"),
])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, content, args, code, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    result = run("score", path if content is not None else "missing.json", *args)
    assert result.returncode == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stdout == ""


def test_bad_model_files(tmp_path, tiny_gguf):
    sol = solutions_file(tmp_path, 1)
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    header = tmp_path / "header.gguf"
    header.write_bytes(tiny_gguf.read_bytes()[:200])
    for path, message in [(text, "not a GGUF file (expected magic b'GGUF', got b'hell')"),
                          (cut, "truncated: tensor"), (header, "corrupt or truncated GGUF header"),
                          (tmp_path, "is a folder")]:
        result = run("score", sol, "--model", path)
        assert result.returncode == 3 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_prompt_longer_than_the_context(tiny_gguf, tmp_path):
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, "--n-ctx", "256")
    assert result.returncode == 4
    assert "tokens and the context is 256 tokens" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_every_command_without_importing_tools():
    result = run("--help")
    assert result.returncode == 0
    for name in ("score", "prompt", "info", "convert", "data", "train", "bench", "rerank"):
        assert f"  {name} " in result.stdout


def test_a_foreign_output_file_is_refused_and_left_untouched(tiny_gguf, tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text('{"note": "mine"}\nnot json, and no newline')
    before = out.read_bytes()
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--output", out)
    assert result.returncode == 2 and "line 1: not an rprm-lite result (it lacks id, steps" in result.stderr
    assert out.read_bytes() == before


def test_an_output_path_that_is_a_folder_fails_before_scoring(tiny_gguf, tmp_path):
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--output", tmp_path)
    assert result.returncode == 2 and "is a folder" in result.stderr and "Traceback" not in result.stderr


def test_critiques_shortened_to_fit_the_context_are_noted_once(tiny_gguf, tmp_path):
    result = run("score", solutions_file(tmp_path, 2), "--model", tiny_gguf, "--k", "1", "--n-ctx", "700",
                 "--seed", "3", "--json")
    assert result.returncode == 0, result.stderr
    used = {json.loads(line)["config"]["effective_max_tokens"] for line in result.stdout.splitlines()}
    assert len(used) == 1 and (limit := used.pop()) < 4096
    notes = [line for line in result.stderr.splitlines() if "critiques were limited" in line]
    assert notes == [f"note: critiques were limited to {limit} tokens (not 4096) to fit the model's context of "
                     "4096 tokens and --n-ctx 700"]
