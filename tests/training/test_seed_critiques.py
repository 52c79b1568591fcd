"""`data seed`: teacher critiques from a stub OpenAI-compatible server, filtered by the labels."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from training_helpers import DROPPED, KEPT, NO, REPLIES, SOLUTIONS, read_jsonl, write_jsonl

from rprm_lite.errors import InputError
from rprm_lite.solution import solution_from_dict
from rprm_lite.training.errors import TeacherError
from rprm_lite.training.seed_critiques import SeedConfig, build_seed_data, dropped_path
from rprm_lite.training.teacher import chat_messages


@pytest.fixture
def solutions_file(tmp_path):
    return write_jsonl(tmp_path / "solutions.jsonl", SOLUTIONS)


def config(solutions_file, out, url, **changes) -> SeedConfig:
    settings = {"teacher_model": "teacher-70b", "retry_delay": 0.01, "max_retries": 2, **changes}
    return SeedConfig(solutions=str(solutions_file), teacher=url, out=str(out), **settings)


def test_keeps_only_agreeing_critiques_and_counts_why_others_drop(tmp_path, solutions_file, stub_teacher):
    server = stub_teacher(REPLIES, fail_first={("What is 2 + 3?", 1)})  # one transient 503, retried
    out = tmp_path / "sft.jsonl"

    report = build_seed_data(config(solutions_file, out, server.url, concurrency=3))

    kept = read_jsonl(out)
    dropped = read_jsonl(dropped_path(out))
    assert {(r["id"], r["step"]) for r in kept} == KEPT
    assert {(r["id"], r["step"]): r["reason"] for r in dropped} == DROPPED
    assert (report.kept, dict(report.dropped), report.new) == (
        4, {"wrong_verdict": 1, "no_verdict": 1, "empty": 1}, 7)
    assert report.summary().startswith("kept 4 of 7 critiques (7 new in this run); dropped: 1 empty, "
                                       "1 no verdict, 1 wrong verdict")
    # the unlabelled step is never asked about; the 503 was retried once
    assert Counter(server.keys()) == Counter({**dict.fromkeys(REPLIES, 1), ("What is 2 + 3?", 1): 2})
    by_key = {(r["id"], r["step"]): r for r in kept}
    assert by_key[("sub", 2)]["critique"] == "Good. Verification: Is the step correct (Yes/No)? Yes"
    assert by_key[("mul", 1)] | {"teacher": None} == {
        "id": "mul", "step": 1, "sample": 0, "label": "wrong", "question": "What is 4 * 6?",
        "steps": ["4 * 6 = 26.", "The answer is 26."], "critique": NO, "verdict": "No", "teacher": None}


def test_requests_carry_the_rprm_prompt_model_key_and_a_per_sample_seed(tmp_path, solutions_file,
                                                                        stub_teacher, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", "sekrit")
    server = stub_teacher(REPLIES)
    build_seed_data(config(solutions_file, tmp_path / "sft.jsonl", server.url, api_key_env="TEACHER_KEY",
                           samples=2, temperature=0.3))

    assert len(server.requests) == 14  # 7 labelled steps x 2 samples
    request = next(r for r in server.requests if r["key"] == ("What is 4 * 6?", 1))
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sekrit"
    assert body["model"] == "teacher-70b" and body["temperature"] == 0.3
    assert body["messages"] == chat_messages(solution_from_dict(SOLUTIONS[1], where="t"), 0)
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert body["messages"][1]["content"].endswith("Now Step: Step 1: 4 * 6 = 26.\nPlease carefully analyze "
                                                   "the correctness of the Now Step.\nReply: ")
    assert len({r["body"]["seed"] for r in server.requests}) == 14


def test_rerun_resumes_and_a_failing_teacher_keeps_partial_output(tmp_path, solutions_file, stub_teacher):
    out = tmp_path / "sft.jsonl"
    broken = stub_teacher({**REPLIES, ("What is 9 - 4?", 3): 503})
    with pytest.raises(TeacherError) as failure:
        build_seed_data(config(solutions_file, out, broken.url, concurrency=1))
    message = str(failure.value)
    assert "failed 3 times; last error: HTTP 503" in message
    assert "rerun the same command to resume" in message
    done = {(r["id"], r["step"]) for r in read_jsonl(out) + read_jsonl(dropped_path(out))}
    assert ("sub", 3) not in done and len(done) >= 5  # the ones answered before the failure are kept

    healthy = stub_teacher(REPLIES)
    report = build_seed_data(config(solutions_file, out, healthy.url))
    assert ("What is 9 - 4?", 3) in healthy.keys()
    assert not set(healthy.keys()) & {(q, n) for (q, n) in REPLIES if _id(q, n) in done}
    assert (report.kept, report.total) == (4, 7)

    again = stub_teacher(REPLIES)
    assert build_seed_data(config(solutions_file, out, again.url)).new == 0
    assert again.requests == []


def _id(question: str, number: int) -> tuple[str, int]:
    return next(s["id"] for s in SOLUTIONS if s["question"] == question), number


def test_a_torn_last_line_from_a_crash_is_dropped_on_resume(tmp_path, solutions_file, stub_teacher):
    out = tmp_path / "sft.jsonl"
    build_seed_data(config(solutions_file, out, stub_teacher(REPLIES).url))
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # the last record half written

    server = stub_teacher(REPLIES)
    report = build_seed_data(config(solutions_file, out, server.url))
    assert len(server.requests) == 1 and report.kept == 4
    assert len(read_jsonl(out)) == 4


def test_unreachable_teacher_is_a_clear_error(tmp_path, solutions_file):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(TeacherError, match=rf"teacher at http://127.0.0.1:{port}/v1/chat/completions failed "
                                           r"3 times; last error: .*The 0 critiques already in"):
        build_seed_data(config(solutions_file, tmp_path / "sft.jsonl", f"http://127.0.0.1:{port}/v1"))


def test_client_errors_are_not_retried(tmp_path, solutions_file, stub_teacher):
    server = stub_teacher(dict.fromkeys(REPLIES, 401))
    with pytest.raises(TeacherError, match="answered HTTP 401: .*check --teacher-model and --api-key-env"):
        build_seed_data(config(solutions_file, tmp_path / "sft.jsonl", server.url, concurrency=1))
    assert len(server.requests) == 1


def test_bad_settings_and_inputs(tmp_path, solutions_file, stub_teacher):
    with pytest.raises(InputError, match="TEACHER_KEY_UNSET.*not set"):
        build_seed_data(config(solutions_file, tmp_path / "o.jsonl", "http://127.0.0.1:9/v1",
                               api_key_env="TEACHER_KEY_UNSET"))
    with pytest.raises(InputError, match="--teacher-model must name the model"):
        build_seed_data(config(solutions_file, tmp_path / "o.jsonl", "http://127.0.0.1:9/v1", teacher_model=""))
    with pytest.raises(InputError, match="samples must be at least 1, got 0; top_p must be in"):
        config(solutions_file, tmp_path / "o.jsonl", "http://x", samples=0, top_p=0)
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl", [{"question": "q", "steps": ["a"]}])
    with pytest.raises(InputError, match="no step labels"):
        build_seed_data(config(unlabelled, tmp_path / "o.jsonl", stub_teacher(REPLIES).url))


def test_a_local_gguf_teacher_writes_k_critiques_per_labelled_step(tmp_path, solutions_file, small_bpe_gguf):
    pytest.importorskip("llama_cpp", reason="the GGUF teacher runs on the rprm-lite runtime")
    out = tmp_path / "sft.jsonl"
    report = build_seed_data(SeedConfig(solutions=str(solutions_file), teacher=str(small_bpe_gguf),
                                        out=str(out), samples=2, max_tokens=8, temperature=1.0))
    records = read_jsonl(out) + read_jsonl(dropped_path(out))
    # a random-weight model never writes the verdict phrase: every critique has no verdict
    assert report.total == 14 and report.dropped["no_verdict"] == 14
    assert sorted((r["id"], r["step"], r["sample"]) for r in records) == sorted(
        (i, n, s) for i, n in [("add", 1), ("add", 2), ("mul", 1), ("sub", 1), ("sub", 2), ("sub", 3),
                               ("div", 1)] for s in (0, 1))
    assert {r["teacher"] for r in records} == {small_bpe_gguf.name}
    assert all(r["critique"] for r in records)
