"""`--backend URL` on the other scoring commands (`bench processbench`, `rerank`, `data pairs`), run as a user
runs them, against a scripted vLLM-format server on loopback (every P(Yes) it gives is known)."""

import json
import subprocess
import sys

from remote_servers import ScriptedServer, models, ok

from rprm_lite.prompt import VERDICT_PHRASE

CRITIQUE = " 1 + 1 is 2, as the step says. Verification: Is the step correct (Yes/No)?"


def vllm(path, body):
    if path == "/v1/models":
        return ok(models("vllm", "r-prm"))
    if path == "/v1/completions":
        return ok({"choices": [{"index": i, "text": CRITIQUE, "finish_reason": "stop", "stop_reason": VERDICT_PHRASE}
                               for i in range(body["n"])]})
    return ok({"data": [{"index": i, "score": 0.75} for i in range(len(body["items"]))]})


def run(*args):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_processbench_on_a_server_resumes_and_records_the_backend(tiny_gguf, tmp_path):
    data = tmp_path / "pb"
    data.mkdir()
    items = [{"id": f"gsm8k-{i}", "generator": "g", "problem": f"What is {i} + 1?", "steps": [f"{i} + 1 = {i + 1}."],
              "final_answer_correct": True, "label": -1} for i in range(3)]
    (data / "gsm8k.json").write_text(json.dumps(items))
    out = tmp_path / "out"
    with ScriptedServer(vllm) as server:
        args = ["bench", "processbench", "--data", data, "--subsets", "gsm8k", "--out", out, "--k", "2",
                "--backend", server.url, "--vocab", tiny_gguf, "--concurrency", "2"]
        first = run(*args)
        again = run(*args)
        scored = len(server.posts("/v1/completions"))
    assert first.returncode == 0, first.stderr
    assert "3 scored, 0 already in" in first.stderr and "0 scored, 3 already in" in again.stderr
    assert scored == 3  # the rerun sent nothing
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    config = json.loads((out / "run.json").read_text())["config"]
    assert (config["backend"], config["server_model"], config["server_kind"]) == ("remote", "r-prm", ["vllm"])
    assert json.loads((out / "metrics.json").read_text())  # the metric ran on the remote scores


def test_rerank_on_a_server(tiny_gguf, tmp_path):
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text(json.dumps({"id": "p1", "question": "What is 1 + 1?",
                                      "candidates": [{"steps": ["1 + 1 = 3."]}, {"steps": ["1 + 1 = 2."]}]}) + "\n")
    given = iter([0.2, 0.9])  # one verdict request per candidate, in order (concurrency 1)

    def scoring(path, body):
        if path == "/generative_scoring":
            score = next(given)
            return ok({"data": [{"index": i, "score": score} for i in range(len(body["items"]))]})
        return vllm(path, body)

    with ScriptedServer(scoring) as server:
        result = run("rerank", candidates, "--backend", server.url, "--vocab", tiny_gguf, "--k", "2", "--json")
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)
    assert (ranked["id"], ranked["best"], ranked["solution_scores"]) == ("p1", 1, [0.2, 0.9])


def test_data_pairs_on_a_server(tiny_gguf, tmp_path):
    solutions = tmp_path / "labelled.jsonl"
    solutions.write_text(json.dumps({"id": "s1", "question": "What is 1 + 1?", "steps": ["1 + 1 = 2.", "So 2."],
                                     "label": -1}) + "\n")
    out = tmp_path / "pairs.jsonl"
    with ScriptedServer(vllm) as server:
        result = run("data", "pairs", "--model", tiny_gguf, "--solutions", solutions, "--out", out, "--k", "2",
                     "--backend", f"vllm+{server.url}", "--prompt-style", "r-prm-eval")
        prompts = [body["prompt"] for body in server.posts("/v1/completions")]
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and records[0]["model"] == "r-prm"
    assert [s["p_yes"] for s in records[0]["samples"]] == [0.75, 0.75]
    assert len(prompts) == 2 and all(isinstance(t, int) for t in prompts[0])


def test_score_with_an_uncertain_band_on_a_server(tiny_gguf, tmp_path):
    solution = tmp_path / "solution.json"
    solution.write_text(json.dumps({"id": "s1", "question": "What is 1 + 1?", "steps": ["1 + 1 = 2.", "So 2."]}))
    with ScriptedServer(vllm) as server:
        result = run("score", solution, "--backend", server.url, "--vocab", tiny_gguf, "--k", "2", "--json",
                     "--uncertain-band", "0.5,0.8")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # every verdict is 0.75: inside the band, so no step is wrong
    assert [(s["score"], s["verdict"]) for s in data["steps"]] == [(0.75, "uncertain")] * 2
    assert (data["first_uncertain_step"], data["first_error_step"]) == (1, None)


def test_options_the_remote_backend_lacks_are_one_error_line_and_nothing_is_sent(tiny_gguf, tmp_path):
    solution = tmp_path / "solution.json"
    solution.write_text(json.dumps({"question": "What is 1 + 1?", "steps": ["1 + 1 = 2."]}))
    calibration = tmp_path / "calibration.json"
    calibration.write_text("{}")
    with ScriptedServer(vllm) as server:
        for args, flag in [(["--adaptive"], "--adaptive"), (["--calibration", calibration], "--calibration"),
                           (["--cache", tmp_path / "cache"], "--cache"), (["--prefix-cache", "off"], "--prefix-cache")]:
            result = run("score", solution, "--backend", server.url, "--vocab", tiny_gguf, *args)
            assert (result.returncode, result.stdout) == (2, ""), result.stderr
            assert result.stderr == (f"error: {flag} is not supported with --backend URL yet; score with the local "
                                     f"engine (--backend local) or leave out {flag}\n")
        assert server.requests == []  # refused before even /v1/models is asked
    assert not (tmp_path / "cache").exists()
