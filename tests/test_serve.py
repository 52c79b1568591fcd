"""`rprm-lite serve` as a desktop app runs it: a real server process on loopback, real HTTP clients.

One module-scoped server (the tiny model, fast defaults) serves most tests; the tests of start-up rules,
shutdown and the API key start their own. A "long" request asks for critiques of thousands of tokens
(minutes of work on the tiny model), so that it is surely still running when a test disconnects it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_process import (
    FAST,
    JSON,
    LONG,
    LONG_ALLOWED,
    SOLUTION,
    Server,
    call,
    error_of,
    open_stream,
    queue,
    run_cli,
    send_raw,
    wait_queue,
)

# answers are compared with what `score --json` prints in another process: with the prefix cache on, a step whose
# prompt started from a kept state says so (prefix_tokens), which depends on what each process scored before
# (tests/test_prefix_cache.py compares the two with it on)
FAST = [*FAST, "--prefix-cache", "off"]

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MAX_QUEUE, MAX_STEPS, MAX_BODY = 3, 8, 100_000
FREED_WITHIN_S = 10  # a cancelled long request frees the engine well within this (it would run for minutes)



@pytest.fixture(scope="module")
def server(tiny_gguf):
    running = Server(tiny_gguf, "--port", 0, *FAST, *LONG_ALLOWED, "--max-request-k", 4, "--max-queue", MAX_QUEUE,
                     "--max-steps", MAX_STEPS, "--max-body-bytes", MAX_BODY).wait_listening()
    running.score_while_loading = error_of(call(running, "POST", "/v1/score", SOLUTION))
    running.health_seen = running.wait_healthy()
    yield running
    assert running.stop() == 0, "".join(running.lines)


def test_health_says_loading_until_the_model_is_loaded(server):
    # the port is bound before the model starts loading (which takes about a second here, so the first
    # poll, sent as soon as the URL is printed, sees it); every answer before "ok" is the loading one
    first, *between, last = server.health_seen
    assert first == (503, {"status": "loading"}) and last == (200, {"status": "ok"})
    assert all(answer == first for answer in between)
    assert server.score_while_loading == (503, "not_ready", "the model is still loading")
    assert call(server, "GET", "/health")[0] == 200


def test_score_answer_is_the_line_score_json_prints(server, tiny_gguf, tmp_path):
    path = tmp_path / "solution.json"
    path.write_text(json.dumps({**SOLUTION, "label": -1}))  # extra fields are echoed, as the CLI does
    cli = run_cli("score", path, "--model", tiny_gguf, *FAST, "--json", "--all-steps", "--seed", "5",
                  "--show-critiques")
    assert cli.returncode == 0, cli.stderr
    status, headers, body = call(server, "POST", "/v1/score", {
        **SOLUTION, "label": -1, "options": {"all_steps": True, "seed": 5, "show_critiques": True}})
    assert status == 200 and headers["content-type"] == "application/json"
    assert body.decode() == cli.stdout
    assert json.loads(body)["extra"] == {"label": -1} and len(json.loads(body)["steps"][0]["critiques"]) == 2


def test_the_calculator_answers_what_score_json_prints(server, tiny_gguf, tmp_path):
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(SOLUTION))
    cli = run_cli("score", path, "--model", tiny_gguf, *FAST, "--json", "--seed", "3", "--show-critiques",
                  "--calculator", "on")
    assert cli.returncode == 0, cli.stderr
    status, _, body = call(server, "POST", "/v1/score", {
        **SOLUTION, "options": {"seed": 3, "show_critiques": True, "calculator": "on"}})
    assert status == 200 and body.decode() == cli.stdout
    answer = json.loads(body)
    assert answer["config"]["calculator"] == "on"
    assert [len(step["calculated"]) for step in answer["steps"]] == [len(step["critiques"]) for step in answer["steps"]]


def test_stream_sends_each_step_in_order_then_the_whole_result(server):
    body = {**SOLUTION, "options": {"all_steps": True, "show_critiques": True}}
    plain = json.loads(call(server, "POST", "/v1/score", body)[2])
    conn, response = open_stream(server, body)
    try:
        events = [json.loads(line) for line in response]
    finally:
        conn.close()
    assert [e["event"] for e in events] == ["step", "step", "result"]
    assert [e["index"] for e in events[:2]] == [1, 2] and {e["id"] for e in events[:2]} == {"s1"}
    assert events[-1]["result"] == plain
    for event, step in zip(events[:2], plain["steps"], strict=True):
        assert {k: v for k, v in event.items() if k not in ("event", "id")} == step
        assert len(event["critiques"]) == 2


ADAPTIVE_ARGS = ["--k", "4", "--adaptive", "--wave", "1", "--confidence", "0.6", "--adaptive-rule", "window"]


def test_adaptive_k_and_the_uncertain_band_answer_what_score_json_prints(server, tiny_gguf, tmp_path):
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(SOLUTION))
    cli = run_cli("score", path, "--model", tiny_gguf, *FAST, *ADAPTIVE_ARGS, "--uncertain-band", "0,1", "--json")
    assert cli.returncode == 0, cli.stderr
    body = {**SOLUTION, "options": {"k": 4, "adaptive": True, "wave": 1, "confidence": 0.6, "adaptive_rule": "window",
                                    "uncertain_band": [0, 1]}}  # whole numbers, written as the CLI's 0,1 is
    status, _, plain = call(server, "POST", "/v1/score", body)
    assert status == 200 and plain.decode() == cli.stdout
    result = json.loads(plain)
    # every score lies in the band [0, 1): uncertain is not an error, so both steps are scored
    assert [s["verdict"] for s in result["steps"]] == ["uncertain", "uncertain"]
    assert (result["first_uncertain_step"], result["first_error_step"]) == (1, None)
    # the window rule at confidence 0.6 needs 2 agreeing critiques: both steps stop at 2 of the 4
    used = [(s["critiques_used"], s["stop_reason"], len(s["p_yes"])) for s in result["steps"]]
    assert used == [(2, "settled", 2)] * 2
    conn, response = open_stream(server, body)
    try:
        events = [json.loads(line) for line in response]
    finally:
        conn.close()
    assert [e["event"] for e in events] == ["step", "step", "result"] and events[-1]["result"] == result
    for event, step in zip(events[:2], result["steps"], strict=True):
        assert {k: v for k, v in event.items() if k not in ("event", "id")} == step


def test_prompt_is_the_text_rprm_lite_prompt_prints(server, tmp_path):
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(SOLUTION))
    cli = run_cli("prompt", path, "--step", "2", "--prompt-style", "chatml")
    status, headers, body = call(server, "POST", "/v1/prompt", {**SOLUTION, "step": 2, "prompt_style": "chatml"})
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert body.decode() == cli.stdout and cli.returncode == 0


def test_info_shows_build_model_and_the_resolved_defaults(server, tiny_gguf):
    info = json.loads(call(server, "GET", "/v1/info")[2])
    assert info["model"]["path"] == str(tiny_gguf) and info["model"]["architecture"] == "qwen2"
    assert info["model"]["metadata"]["rprm.description"].startswith("random weights")
    assert (info["settings"]["k"], info["settings"]["max_tokens"], info["settings"]["seed"]) == (2, 3, 3)
    assert info["build"]["llama_cpp_python"] and info["server"]["max_queue"] == MAX_QUEUE
    assert info["queue"]["running"] is False and info["queue"]["waiting"] == 0


BAD_BODIES = [
    (b'{"question": "q", "steps": ["a"]', 400, "invalid_json", "request body: invalid JSON at line 1, column 33"),
    (b'{"question": "q", "steps": ["a"], "options": {"k": NaN}}', 400, "invalid_json", "NaN is not a JSON number"),
    (b"[1, 2]", 422, "invalid_input", "request body: expected a JSON object, got list"),
    ({"steps": ["a"]}, 422, "invalid_input", "request body: missing 'question' (or ProcessBench 'problem')"),
    ({"question": "q", "steps": []}, 422, "invalid_input", "request body: 'steps' is empty"),
    ({"question": "q", "steps": ["a", 3]}, 422, "invalid_input", "request body: step 2 must be a string, got int"),
    ({**SOLUTION, "options": {"k": 0}}, 422, "invalid_input", "invalid settings: k must be at least 1, got 0"),
    ({**SOLUTION, "options": {"top_p": "high"}}, 422, "invalid_input", "top_p must be a finite number, got 'high'"),
    ({**SOLUTION, "options": {"model": "/etc/passwd"}}, 422, "invalid_input", "unknown option 'model'"),
    ({**SOLUTION, "options": {"threads": 2}}, 422, "invalid_input", "unknown option 'threads'"),
    ({**SOLUTION, "options": [1]}, 422, "invalid_input", "'options' must be an object, got a list"),
    ({**SOLUTION, "stream": "yes"}, 422, "invalid_input", 'stream must be true or false, got "yes"'),
    ({**SOLUTION, "options": {"show_critiques": 1}}, 422, "invalid_input", "show_critiques must be true or false"),
    ({**SOLUTION, "options": {"adaptive": "yes"}}, 422, "invalid_input", "adaptive must be true or false, got 'yes'"),
    ({**SOLUTION, "options": {"confidence": 0.5}}, 422, "invalid_input", "confidence must be in (0.5, 1]"),
    ({**SOLUTION, "options": {"seed": 2**64}}, 422, "invalid_input",
     "invalid settings: seed must be between 0 and 18446744073709551615, got 18446744073709551616"),
    ({**SOLUTION, "options": {"temperature": 10**400}}, 422, "invalid_input",
     "invalid settings: temperature must be a finite number, got an integer of about 401 digits"),
    ({**SOLUTION, "options": {"wave": 0}}, 422, "invalid_input", "wave must be between 1 and 255 critiques, got 0"),
    ({**SOLUTION, "options": {"adaptive_rule": "vote"}}, 422, "invalid_input",
     "adaptive_rule must be one of beta, betting, window, got 'vote'"),
    ({**SOLUTION, "options": {"uncertain_band": [0.6, 0.7]}}, 422, "invalid_input",
     "invalid settings: uncertain_band 0.6,0.7 must hold the threshold 0.5"),
    ({**SOLUTION, "options": {"uncertain_band": "0.4,0.6"}}, 422, "invalid_input",
     "uncertain_band must be two finite numbers LOW,HIGH, got '0.4,0.6'"),
    ({"question": "q", "steps": ["a"] * (MAX_STEPS + 1)}, 413, "too_many_steps",
     f"request body: {MAX_STEPS + 1} steps; this server scores at most {MAX_STEPS} per solution"),
    ({"question": "q", "steps": ["word " * 20_000]}, 413, "body_too_large", "this server takes at most 100,000"),
    ({"question": "q", "steps": ["word " * 5_000]}, 413, "context_overflow", "the longest step prompt is at least"),
]


@pytest.mark.parametrize(("body", "status", "kind", "message"), BAD_BODIES)
def test_bad_input_is_a_json_error_and_the_server_lives_on(server, body, status, kind, message):
    got = error_of(call(server, "POST", "/v1/score", body))
    assert got[:2] == (status, kind) and message in got[2]
    assert "Traceback" not in "".join(server.lines)
    assert call(server, "GET", "/health")[0] == 200


def test_a_streamed_solution_too_long_for_the_context_ends_in_an_error_event(server):
    conn, response = open_stream(server, {"question": "q", "steps": ["word " * 5_000]})
    try:
        events = [json.loads(line) for line in response]
    finally:
        conn.close()
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["error"]["type"] == "context_overflow"
    assert "the longest step prompt is at least" in events[0]["error"]["message"]


def test_validation_messages_are_the_clis(server, tiny_gguf, tmp_path):
    bad = {"question": "q", "steps": ["a", ""]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    cli = run_cli("score", path, "--model", tiny_gguf)
    assert cli.returncode == 2 and cli.stderr == f"error: {path}: step 2 is empty\n"
    assert error_of(call(server, "POST", "/v1/score", bad))[2] == "request body: step 2 is empty"
    cli = run_cli("score", path, "--model", tiny_gguf, "--temperature", "-1")
    server_says = error_of(call(server, "POST", "/v1/score", {**SOLUTION, "options": {"temperature": -1.0}}))[2]
    assert cli.stderr == f"error: {server_says}\n"


def test_other_bad_requests(server):
    assert error_of(call(server, "GET", "/nowhere"))[:2] == (404, "not_found")
    assert error_of(call(server, "GET", "/v1/score"))[:2] == (405, "method_not_allowed")
    assert error_of(call(server, "POST", "/v1/prompt", {**SOLUTION, "step": 3})) == (
        422, "invalid_input", "step must be between 1 and 2, got 3")
    chunked = error_of(call(server, "POST", "/v1/score", (b" " * 60_000, b" " * 60_000)))
    assert chunked[:2] == (413, "body_too_large")  # no Content-Length: counted as it arrives


def test_concurrent_clients_get_the_results_they_get_alone(server):
    bodies = [{"id": f"c{i}", "question": f"What is {i} + 1?", "steps": [f"{i} + 1 = {i + 1}.", "Done."],
               "options": {"all_steps": True, "seed": i}} for i in range(4)]
    alone = [call(server, "POST", "/v1/score", body)[2] for body in bodies]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda body: call(server, "POST", "/v1/score", body), bodies))
    assert [status for status, _, _ in together] == [200] * 4
    assert [body for _, _, body in together] == alone


def test_a_disconnected_stream_frees_the_engine(server):
    conn, response = open_stream(server, LONG)
    wait_queue(server, running=True)
    conn.close()  # the client goes away mid-score
    freed = wait_queue(server, running=False)
    assert freed < FREED_WITHIN_S
    assert call(server, "POST", "/v1/score", SOLUTION)[0] == 200  # the next request is served


def test_a_disconnected_plain_request_frees_the_engine(server):
    sock = send_raw(server, LONG)
    wait_queue(server, running=True)
    sock.close()
    assert wait_queue(server, running=False) < FREED_WITHIN_S
    assert call(server, "POST", "/v1/score", SOLUTION)[0] == 200


def test_a_request_can_be_cancelled_by_its_id_and_token_only(server):
    token = {"X-Cancel-Token": "owner-secret-0123456789"}
    conn = http.client.HTTPConnection(*server.address, timeout=120)
    conn.request("POST", "/v1/score", body=json.dumps({**LONG, "stream": True}),
                 headers={**JSON, "X-Request-Id": "job-7", **token})
    response = conn.getresponse()
    assert response.getheader("x-request-id") == "job-7"
    wait_queue(server, running=True)
    again = error_of(call(server, "POST", "/v1/score", SOLUTION, headers={"X-Request-Id": "job-7"}))
    assert again[:2] == (409, "duplicate_request_id")
    # another client knowing the id, with no token or a wrong one, is told what it would be told of no request
    for other in ({}, {"X-Cancel-Token": "a-guess-0123456789"}):
        assert error_of(call(server, "POST", "/v1/score/job-7/cancel", headers=other)) == (
            404, "not_found", "no waiting or running request has the id 'job-7' and that X-Cancel-Token (send "
                              "the one the request was sent with)")
    assert queue(server)["running"] is True
    status, _, body = call(server, "POST", "/v1/score/job-7/cancel", headers=token)
    assert (status, json.loads(body)) == (200, {"cancelled": True})
    assert [json.loads(line) for line in response] == [{"event": "error", "error": {
        "type": "cancelled", "message": "cancelled: the client cancelled it"}}]
    conn.close()
    assert error_of(call(server, "POST", "/v1/score/job-7/cancel", headers=token))[:2] == (404, "not_found")
    assert error_of(call(server, "POST", "/v1/score", SOLUTION, headers={"X-Request-Id": "no spaces"}))[0] == 422
    assert error_of(call(server, "POST", "/v1/score", SOLUTION, headers={"X-Cancel-Token": "short"})) == (
        422, "invalid_input", "X-Cancel-Token must be 16 to 128 letters, digits or . _ : -, got 'short'")
    status, headers, _ = call(server, "POST", "/v1/score", SOLUTION)
    assert status == 200 and len(headers["x-request-id"]) == 32  # one is made up when none is sent


def test_a_full_queue_answers_503_with_retry_after(server):
    running = send_raw(server, LONG)
    wait_queue(server, running=True)
    waiting = [send_raw(server, {**LONG, "id": f"w{i}"}) for i in range(MAX_QUEUE)]
    try:
        wait_queue(server, waiting=MAX_QUEUE)
        status, headers, body = call(server, "POST", "/v1/score", SOLUTION)
        assert (status, json.loads(body)["error"]["type"]) == (503, "queue_full") and headers["retry-after"] == "1"
    finally:
        for sock in [*waiting, running]:
            sock.close()
    wait_queue(server, running=False, waiting=0)
    assert call(server, "POST", "/v1/score", SOLUTION)[0] == 200


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_cancels_the_work_in_flight_and_exits_0(tiny_gguf, signal_number):
    server = Server(tiny_gguf, "--port", 0, *FAST, *LONG_ALLOWED).wait_listening()
    server.wait_healthy()
    conn, response = open_stream(server, LONG)
    wait_queue(server, running=True)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(call, server, "POST", "/v1/score", {**LONG, "id": "waiting"})
        wait_queue(server, waiting=1)
        server.proc.send_signal(signal_number)
        events = [json.loads(line) for line in response]
        assert error_of(waiting.result(timeout=60)) == (
            503, "cancelled", "cancelled while waiting: the server is shutting down")
    conn.close()
    assert events[-1] == {"event": "error", "error": {
        "type": "cancelled", "message": "cancelled: the server is shutting down"}}
    assert server.wait() == 0
    assert server.lines[-1] == "rprm-lite serve: model freed\n" and "Traceback" not in "".join(server.lines)


def test_adaptive_band_calibration_and_cache_as_server_defaults(tiny_gguf, tmp_path):
    from rprm_lite.model_file import inspect_model

    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"format": "rprm-lite-calibration", "version": 1, "model": "tiny.gguf",
                                       "model_sha256": inspect_model(tiny_gguf).sha256, "threshold": 0.3,
                                       "map": None, "settings": {"k": 4}}))
    defaults = [*FAST, *ADAPTIVE_ARGS, "--uncertain-band", "0.2,0.4", "--calibration", calibration]
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(SOLUTION))
    cli = run_cli("score", path, "--model", tiny_gguf, *defaults, "--json")
    assert cli.returncode == 0, cli.stderr
    server = Server(tiny_gguf, "--port", 0, *defaults, "--cache", tmp_path / "cache").wait_listening()
    try:
        server.wait_healthy()
        assert call(server, "POST", "/v1/score", SOLUTION)[2].decode() == cli.stdout
        assert len(list((tmp_path / "cache").glob("*/*.json"))) == 2  # --cache: one entry per scored step
        assert call(server, "POST", "/v1/score", SOLUTION)[2].decode() == cli.stdout  # now from the cache
        info = json.loads(call(server, "GET", "/v1/info")[2])
        assert info["settings"]["threshold"] == 0.3 and info["server"]["cache"] == str(tmp_path / "cache")
        assert error_of(call(server, "POST", "/v1/score", {**SOLUTION, "options": {"threshold": 0.5}})) == (
            422, "invalid_input", "request body: options: threshold cannot be set on this server: its calibration "
                                  "file (--calibration) sets the threshold")
        status, _, message = error_of(call(server, "POST", "/v1/score", {**SOLUTION, "options": {"k": 2}}))
        assert status == 422 and message.endswith("was fit on scores made with other settings (k 4 there, 2 here); "
                                                  "score with those settings or fit a calibration for these")
        assert "calibration" not in json.loads(call(server, "GET", "/v1/info")[2])["request_options"]
        # turning adaptive K off turns its server-wide settings off with it (they mean nothing without it)
        plain = call(server, "POST", "/v1/score", {**SOLUTION, "options": {"adaptive": False}})
        assert plain[0] == 200 and "confidence" not in json.loads(plain[2])["config"]
    finally:
        assert server.stop() == 0, "".join(server.lines)


def test_a_non_loopback_bind_needs_an_api_key(tiny_gguf):
    refused = run_cli("serve", "--model", tiny_gguf, "--host", "0.0.0.0", "--port", 0)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: refusing to bind 0.0.0.0: only loopback addresses")
    unset = run_cli("serve", "--model", tiny_gguf, "--host", "0.0.0.0", "--api-key-env", "RPRM_TEST_NO_SUCH_KEY")
    assert unset.returncode == 2 and "RPRM_TEST_NO_SUCH_KEY: the environment variable is not set" in unset.stderr


def test_bad_settings_and_model_files_fail_before_binding(tmp_path):
    not_a_model = tmp_path / "notes.gguf"
    not_a_model.write_text("hello, not a model")
    result = run_cli("serve", "--model", not_a_model, "--port", 0)
    assert result.returncode == 3 and "not a GGUF file (expected magic b'GGUF', got b'hell')" in result.stderr
    for args, message in [(["--max-queue", "-1"], "max-queue must be at least 0, got -1"),
                          (["--k", "0"], "k must be at least 1, got 0"),
                          (["--cors-origin", "tutor.local"], "cors-origin must be * or an origin as browsers"),
                          (["--cors-origin", "http://tutor.local/"], "scheme://host[:port] with no path")]:
        result = run_cli("serve", "--model", not_a_model, "--port", 0, *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_one_error_line(tiny_gguf):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--model", tiny_gguf, "--port", port)
    assert result.returncode == 1 and result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.splitlines()) == 1


def test_api_key_and_cors(tiny_gguf):
    key = "k" * 32
    server = Server(tiny_gguf, "--host", "0.0.0.0", "--port", 0, *FAST, *LONG_ALLOWED, "--api-key-env", "RPRM_TEST_KEY",
                    "--cors-origin", "http://tutor.local", "--show-critiques", env={**os.environ, "RPRM_TEST_KEY": key})
    try:
        server.wait_listening()
        server.url = server.url.replace("0.0.0.0", "127.0.0.1")
        server.wait_healthy()  # /health needs no key
        assert error_of(call(server, "GET", "/v1/info"))[:2] == (401, "unauthorized")
        assert error_of(call(server, "GET", "/v1/info", headers={"Authorization": "Bearer wrong"}))[0] == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert call(server, "GET", "/v1/info", headers=auth)[0] == 200
        shown = json.loads(call(server, "POST", "/v1/score", SOLUTION, headers=auth)[2])["steps"][0]
        hidden = json.loads(call(server, "POST", "/v1/score", {**SOLUTION, "options": {"show_critiques": False}},
                                 headers=auth)[2])["steps"][0]
        assert len(shown["critiques"]) == 2 and "critiques" not in hidden  # --show-critiques is the default
        preflight = {"Origin": "http://tutor.local", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        assert call(server, "OPTIONS", "/v1/score", headers=preflight)[1]["access-control-allow-origin"] == (
            "http://tutor.local")
        other = call(server, "OPTIONS", "/v1/score", headers={**preflight, "Origin": "http://evil.example"})
        assert other[0] == 403 and "access-control-allow-origin" not in other[1]
        listed = call(server, "POST", "/v1/score", SOLUTION, headers={**auth, "Origin": "http://tutor.local"})
        assert listed[0] == 200 and listed[1]["access-control-allow-origin"] == "http://tutor.local"
        # with a key the Host is not checked: the key keeps others out, and a LAN client names the server
        # by an address or name the server cannot know
        assert call(server, "GET", "/v1/info", headers={**auth, "Host": "tutor-pc.lan:8080"})[0] == 200
        assert error_of(call(server, "GET", "/v1/info", headers={"Host": "tutor-pc.lan:8080"}))[0] == 401
        # a key holder may cancel any request by its id: every client of this server holds the key
        conn = http.client.HTTPConnection(*server.address, timeout=120)
        conn.request("POST", "/v1/score", body=json.dumps({**SOLUTION, "stream": True, "options": {
            "max_tokens": 4000, "all_steps": True}}), headers={**JSON, **auth, "X-Request-Id": "keyed-1"})
        response = conn.getresponse()
        assert call(server, "POST", "/v1/score/keyed-1/cancel", headers=auth)[0] == 200
        assert json.loads(response.read().splitlines()[-1])["error"]["type"] == "cancelled"
        conn.close()
    finally:
        assert server.stop() == 0


def test_no_cors_headers_unless_asked(server):
    status, headers, _ = call(server, "GET", "/v1/info", headers={"Origin": "http://tutor.local"})
    assert status == 403 and not any(name.startswith("access-control-") for name in headers)


def test_without_the_serve_extra_it_says_what_to_install(tiny_gguf):
    code = ("import sys; sys.modules['fastapi'] = None; from rprm_lite.cli import main; "
            f"main(['serve', '--model', {str(tiny_gguf)!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == ("error: `rprm-lite serve` needs optional dependencies that are not installed "
                             "(fastapi); install them with: pip install 'rprm-lite[serve]'\n")


# per operation, valid and broken cases together; a valid score case costs a real (tiny) scoring call
FUZZ_EXAMPLES = {"/v1/score": 12, "/v1/prompt": 25, "/v1/info": 3, "/health": 3, "/v1/score/{request_id}/cancel": 5}


def test_fuzzing_the_openapi_schema_finds_no_server_error(server):
    """Bodies generated from the server's own OpenAPI schema, valid ones and broken ones (hypothesis with
    a fixed seed): every answer is below 500 and the server stays up. Costly options are capped so that
    a valid case scores in a fraction of a second."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/health", "/v1/info", "/v1/prompt", "/v1/score",
                                              "/v1/score/{request_id}/cancel"}
    statuses = {op.path: _fuzz(server, op, GenerationMode) for op in operations}
    # both kinds of case reached the scorer's endpoints: some were scored, some refused
    for path in ("/v1/score", "/v1/prompt"):
        assert 200 in statuses[path] and any(400 <= status < 500 for status in statuses[path]), statuses
    assert call(server, "GET", "/health")[0] == 200 and server.proc.poll() is None
    assert "Traceback" not in "".join(server.lines)


def _fuzz(server, operation, modes) -> set[int]:
    """Run the cases of one operation; returns the statuses seen."""
    seen = set()
    cases = st.one_of(operation.as_strategy(modes.POSITIVE), operation.as_strategy(modes.NEGATIVE))

    @settings(max_examples=FUZZ_EXAMPLES[operation.path], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def check(case):
        _cap_costly_options(case)
        response = case.call(base_url=server.url, timeout=60)
        assert response.status_code < 500, (case.body, response.text)
        seen.add(response.status_code)
        if response.status_code >= 400 and operation.path != "/health":
            assert set(response.json()["error"]) == {"type", "message"}

    check()
    return seen


def _cap_costly_options(case) -> None:
    options = case.body.get("options") if isinstance(case.body, dict) else None
    if isinstance(options, dict):
        for name, most in (("k", 2), ("max_tokens", 3)):
            if isinstance(options.get(name), int) and not isinstance(options[name], bool) and options[name] > most:
                options[name] = most


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("client", ["python", "node"])
def test_the_example_clients_print_each_step_as_it_streams(server, tmp_path, client):
    body = {**SOLUTION, "options": {"all_steps": True}}
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(body))
    result = json.loads(call(server, "POST", "/v1/score", body)[2])
    if client == "python":
        command = [sys.executable, EXAMPLES / "serve_client.py", path, "--url", server.url]
    else:
        node = shutil.which("node")
        if node is None:
            pytest.skip("needs node (18 or later) for the JavaScript example")
        command = [node, EXAMPLES / "serve_client.mjs", path, server.url]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        *(f"step {s['index']}: {s['verdict']:<11} score {s['score']:.3f}" for s in result["steps"]),
        f"solution s1: no error found; solution score {result['solution_score']:.3f}"
        if result["first_error_step"] is None else
        f"solution s1: first error at step {result['first_error_step']}; "
        f"solution score {result['solution_score']:.3f}"]
