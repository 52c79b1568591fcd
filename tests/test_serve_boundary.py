"""`rprm-lite serve` under hostile clients: other origins, DNS-rebinding names, greedy and stalled requests.

A real server process on loopback and real HTTP clients (raw sockets where a client must misbehave on the
wire). Every hostile case is bounded: a few hundred connections at most, deadlines of seconds.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_process import FAST, LONG, LONG_ALLOWED, SOLUTION, Server, call, error_of, queue, run_cli, wait_queue

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

LISTED = "http://tutor.local"
READ_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(tiny_gguf):
    running = Server(tiny_gguf, "--port", 0, *FAST, "--cors-origin", LISTED).wait_listening()
    running.wait_healthy()
    yield running
    assert running.stop() == 0, "".join(running.lines)
    assert "Traceback" not in "".join(running.lines)


def scored(server) -> int:
    return queue(server)["scored"]


def raw(server, data: bytes) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=30)
    sock.sendall(data)
    return sock


def answer_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sends before closing (b"" for a plain close), or None if it is still open."""
    sock.settimeout(seconds)
    chunks = []
    try:
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return b"".join(chunks)


# -- Host: DNS rebinding ----------------------------------------------------------------------------
REBOUND_HOSTS = ["attacker.example", "attacker.example:{port}", "localhost.attacker.example:{port}",
                 "127.0.0.1.nip.io:{port}", "127.0.0.1@attacker.example:{port}", "127.0.0.1:{port}:80", "[::1",
                 "localhost:http", ""]
OWN_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.0.0.2", "localhost."]


@pytest.mark.parametrize("host", REBOUND_HOSTS)
def test_a_keyless_server_refuses_a_host_that_is_not_its_own(server, host):
    """A page whose name was rebound to 127.0.0.1 sends that name as Host: refused before anything answers,
    /health included, and nothing is scored."""
    host = host.format(port=server.address[1])
    before = scored(server)
    for method, path, body in (("GET", "/v1/info", None), ("POST", "/v1/score", SOLUTION), ("GET", "/health", None)):
        status, kind, message = error_of(call(server, method, path, body, headers={"Host": host}))
        assert (status, kind) == (403, "forbidden_host")
        assert message.startswith(f"Host {host!r} is not this server's: without an API key it answers only")
    assert scored(server) == before


@pytest.mark.parametrize("host", OWN_HOSTS)
def test_loopback_names_and_addresses_are_served(server, host):
    status, _, body = call(server, "POST", "/v1/score", SOLUTION, headers={"Host": host.format(port=server.address[1])})
    assert status == 200 and json.loads(body)["id"] == "s1"


# -- Origin and content type: pages on other origins --------------------------------------------------
@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost.evil.example",
                                   "http://127.0.0.1:1", "https://tutor.local", "http://tutor.local.evil.example"])
@pytest.mark.parametrize("kind", ["text/plain", "application/json"])
def test_a_page_on_an_unlisted_origin_is_refused_whatever_it_sends(server, origin, kind):
    before = scored(server)
    status, _, message = error_of(call(server, "POST", "/v1/score", json.dumps(SOLUTION).encode(),
                                       headers={"Origin": origin, "Content-Type": kind}))
    assert status == 403 and message.startswith(f"Origin {origin!r} may not call this server")
    assert error_of(call(server, "GET", "/v1/info", headers={"Origin": origin}))[:2] == (403, "forbidden_origin")
    preflight = call(server, "OPTIONS", "/v1/score", headers={"Origin": origin, "Access-Control-Request-Method":
                                                              "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight[0] == 403 and not any(name.startswith("access-control-") for name in preflight[1])
    assert scored(server) == before


def test_a_listed_origin_gets_cors_answers_and_its_own_origin_needs_none(server):
    preflight = call(server, "OPTIONS", "/v1/score", headers={
        "Origin": LISTED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-request-id,x-cancel-token"})
    assert preflight[0] == 200 and preflight[1]["access-control-allow-origin"] == LISTED
    allowed = preflight[1]["access-control-allow-headers"].lower()
    assert all(name in allowed for name in ("content-type", "x-request-id", "x-cancel-token"))
    status, headers, _ = call(server, "POST", "/v1/score", SOLUTION, headers={"Origin": LISTED})
    assert status == 200 and headers["access-control-allow-origin"] == LISTED
    assert "x-request-id" in headers["access-control-expose-headers"].lower()
    # a listed page's wrong body is refused in a way it can read
    refused = call(server, "POST", "/v1/score", json.dumps(SOLUTION).encode(),
                   headers={"Origin": LISTED, "Content-Type": "text/plain"})
    assert refused[0] == 415 and refused[1]["access-control-allow-origin"] == LISTED
    own = f"http://127.0.0.1:{server.address[1]}"  # a page the server itself would serve (/docs)
    assert call(server, "POST", "/v1/score", SOLUTION, headers={"Origin": own})[0] == 200


@pytest.mark.parametrize("kind", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                  "multipart/form-data; boundary=x", "application/jsonx", "application/json-seq",
                                  None])
@pytest.mark.parametrize("path", ["/v1/score", "/v1/prompt"])
def test_a_body_that_is_not_declared_json_is_not_read(server, kind, path):
    """What a page may send without a preflight (text/plain, forms; a Blob sends no type at all) is 415."""
    before = scored(server)
    body = json.dumps({**SOLUTION, "step": 1}).encode()
    got = error_of(call(server, "POST", path, body, headers={"Content-Type": kind}))
    assert got == (415, "unsupported_media_type", f"request body: Content-Type must be application/json, got "
                                                  f"{kind or ''!r}; send the body as JSON with that header")
    assert scored(server) == before
    assert call(server, "POST", path, body, headers={"Content-Type": "Application/JSON; charset=utf-8"})[0] == 200


# -- limits on the work one request asks for ---------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"k": 10}, "options: k 10 is above this server's limit of 2 (--max-request-k); ask for at most 2"),
    ({"k": 255, "max_tokens": 1}, "options: k 255 is above this server's limit of 2 (--max-request-k)"),
    ({"adaptive": True, "k": 50}, "options: k 50 is above this server's limit of 2 (--max-request-k)"),
    ({"max_tokens": 4}, "options: max_tokens 4 is above this server's limit of 3 (--max-request-tokens)"),
])
def test_a_request_above_the_servers_own_settings_is_refused_naming_the_limit(server, options, message):
    status, kind, text = error_of(call(server, "POST", "/v1/score", {**SOLUTION, "options": options}))
    assert (status, kind) == (422, "over_limit") and text.startswith(f"request body: {message}")


def test_the_limits_are_options_and_a_default_above_them_is_refused_at_start(server, tiny_gguf):
    info = json.loads(call(server, "GET", "/v1/info")[2])["server"]
    assert (info["max_request_k"], info["max_request_tokens"]) == (2, 3)  # the server's --k and --max-tokens
    refused = run_cli("serve", "--model", tiny_gguf, "--port", 0, "--k", 4, "--max-request-k", 2)
    assert refused.returncode == 2 and refused.stderr == (
        "error: --k 4 is above --max-request-k 2: every request would be refused; raise the limit or lower the "
        "default\n")
    for args, message in [(["--max-request-k", "256"], "max-request-k must be between 1 and 255, got 256"),
                          (["--read-timeout", "0"], "read-timeout must be more than 0 seconds, got 0.0"),
                          (["--max-connections", "5", "--max-queue", "4"], "max-connections must be at least "
                           "max-queue + 2 (6: the running request, the waiting ones and one to answer), got 5")]:
        result = run_cli("serve", "--model", tiny_gguf, "--port", 0, *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    few_files = subprocess.run([sys.executable, "-m", "rprm_lite.cli", "serve", "--model", tiny_gguf, "--port", "0"],
                               capture_output=True, text=True, timeout=120, preexec_fn=lambda: resource.setrlimit(
                                   resource.RLIMIT_NOFILE, (100, 100)))
    assert few_files.returncode == 2 and few_files.stderr == (
        "error: --max-connections 64 needs about 192 open files, and this process may open 100 (ulimit -n); lower "
        "--max-connections to at most 18\n")


def test_a_request_over_its_time_budget_stops_and_frees_the_engine(tiny_gguf):
    server = Server(tiny_gguf, "--port", 0, *FAST, *LONG_ALLOWED, "--request-timeout", 1).wait_listening()
    try:
        server.wait_healthy()
        started = time.monotonic()
        status, kind, message = error_of(call(server, "POST", "/v1/score", LONG, timeout=60))
        took = time.monotonic() - started
        assert (status, kind) == (503, "time_limit") and took < 10  # a 4000-token request runs for minutes
        assert message == ("scoring took more than this server's limit of 1 s per request (--request-timeout); "
                           "ask for fewer critiques (k), tokens (max_tokens) or steps")
        wait_queue(server, timeout=5, running=False)
        assert call(server, "POST", "/v1/score", SOLUTION)[0] == 200
    finally:
        assert server.stop() == 0


# -- stalled clients -----------------------------------------------------------------------------------
HALF_HEAD = b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\n"
HALF_BODY = (b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n{\"question\"")


def test_hundreds_of_half_sent_requests_cannot_exhaust_the_server(tiny_gguf):
    """300 stalled connections against a process allowed 256 open files: the oldest are closed past
    --max-connections, so /health keeps answering at once and the open files stay bounded; a stalled head
    is dropped and a stalled body gets 408 after --read-timeout."""
    server = Server(tiny_gguf, "--port", 0, *FAST, "--max-connections", 40, "--read-timeout", READ_TIMEOUT_S,
                    open_files=256).wait_listening()
    stalled = []
    try:
        server.wait_healthy()
        stalled = [raw(server, HALF_HEAD if n % 2 else HALF_BODY) for n in range(300)]
        assert call(server, "GET", "/health", timeout=5)[0] == 200  # before: no answer at all
        assert len(os.listdir(f"/proc/{server.proc.pid}/fd")) < 40 + 60  # the cap, the model, pipes, threads
        head, body = raw(server, HALF_HEAD), raw(server, HALF_BODY)
        assert answer_within(head, READ_TIMEOUT_S + 5) == b""
        answer = answer_within(body, READ_TIMEOUT_S + 5)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"type":"request_timeout"' in answer
        assert b"request body: 11 bytes arrived in 2 s (--read-timeout) and the rest did not" in answer
        assert call(server, "POST", "/v1/score", SOLUTION)[0] == 200
    finally:
        for sock in stalled:
            sock.close()
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.lines)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_stalled_clients_do_not_hold_the_shutdown(tiny_gguf, signal_number):
    server = Server(tiny_gguf, "--port", 0, *FAST, *LONG_ALLOWED).wait_listening()
    server.wait_healthy()
    clients = [raw(server, HALF_BODY), raw(server, HALF_HEAD),
               raw(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")]  # then idle, kept alive
    scoring = raw(server, b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(json.dumps(LONG)), json.dumps(LONG).encode()))
    time.sleep(0.5)
    started = time.monotonic()
    server.proc.send_signal(signal_number)
    assert server.wait() == 0
    took = time.monotonic() - started
    assert b"cancelled: the server is shutting down" in answer_within(scoring, 5)
    for sock in [*clients, scoring]:
        sock.close()
    log = "".join(server.lines)
    assert took < 4 and "Traceback" not in log and "CancelledError" not in log, (took, log)  # before: 10 s


# -- what a request may hold --------------------------------------------------------------------------
HUGE = st.integers(min_value=10**309, max_value=10**1000)  # JSON allows these; no float holds them


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["temperature", "top_p", "threshold", "confidence", "uncertain_band"]), magnitude=HUGE,
       sign=st.sampled_from([1, -1]))
def test_numbers_no_float_can_hold_are_a_422_not_a_500(server, name, magnitude, sign):
    value = [0, sign * magnitude] if name == "uncertain_band" else sign * magnitude
    body = json.dumps({**SOLUTION, "options": {name: value}}).encode()
    status, kind, message = error_of(call(server, "POST", "/v1/score", body))
    assert (status, kind) == (422, "invalid_input") and len(message) < 200, message
    assert "digits" in message or "..." in message


@pytest.mark.parametrize(("value", "kind"), [({"a": 1}, "an object"), ([1, 2], "a list"), (True, "a boolean"),
                                             (1.5, "float")])
def test_an_id_that_is_no_string_or_integer_is_refused_not_echoed_as_python(server, value, kind):
    assert error_of(call(server, "POST", "/v1/score", {**SOLUTION, "id": value})) == (
        422, "invalid_input", f"request body: 'id' must be a string or an integer, got {kind}")
    status, _, body = call(server, "POST", "/v1/score", {**SOLUTION, "id": 7})
    assert status == 200 and json.loads(body)["id"] == "7"


def test_adaptive_settings_without_adaptive_are_refused(server):
    for options, message in [({"confidence": 0.9}, "confidence 0.9 only applies with adaptive K"),
                             ({"wave": 1, "adaptive_rule": "window"}, "wave 1, adaptive_rule window only apply")]:
        status, _, text = error_of(call(server, "POST", "/v1/score", {**SOLUTION, "options": options}))
        assert status == 422 and message in text
    assert call(server, "POST", "/v1/score", {**SOLUTION, "options": {"confidence": 0.9, "adaptive": True}})[0] == 200


# -- the body reader, in process: whatever a client sends is a request or a 4xx --------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**400, max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _read_body(raw: bytes):
    from rprm_lite.config import ScoreConfig
    from rprm_lite.serve import bodies
    from rprm_lite.serve.settings import ServeConfig

    defaults = ScoreConfig(k=2, max_tokens=3)
    try:
        return bodies.score_request(bodies.parse_json(raw), defaults, server=ServeConfig().with_limits(defaults))
    except bodies.ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message and len(exc.message) < 400, exc.message
        return exc


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(option=st.sampled_from(["k", "temperature", "top_p", "threshold", "max_tokens", "seed", "all_steps",
                               "prompt_style", "verdict", "aggregation", "adaptive", "confidence", "wave",
                               "adaptive_rule", "uncertain_band", "show_critiques", "model"]),
       value=JSON_VALUES, id_value=JSON_VALUES, stream=JSON_VALUES)
def test_any_json_in_a_score_body_is_a_request_or_a_4xx(option, value, id_value, stream):
    body = {**SOLUTION, "id": id_value, "stream": stream, "options": {option: value}}
    got = _read_body(json.dumps(body).encode())
    if not isinstance(got, Exception):  # what was read is what was sent, and within the server's limits
        assert got.config.k <= 2 and got.config.max_tokens <= 3 and got.stream is stream
        assert got.solution.id == (str(id_value) if id_value is not None else got.solution.id)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_mutated_body_bytes_are_a_request_or_a_4xx(data):
    raw = bytearray(json.dumps({**SOLUTION, "options": {"temperature": 0.5, "uncertain_band": [0.4, 0.6]}}).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at:at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=6) | st.sampled_from(
            [b"1" * 400, b"1e400", b"NaN", b"[" * 80, b"\\ud800", b"\xff", b'"', b"-0", b"9" * 5000]))
    _read_body(bytes(raw))


def test_a_client_that_stops_reading_does_not_hold_the_shutdown():
    """The server's own connection class under uvicorn, with an app that answers 13 MB: the client reads
    none of it, so the server's writes stall; on shutdown the connection is cut after SHUTDOWN_GRACE_S, even
    with uvicorn's own shutdown timeout off. (The tiny model cannot write that much in a test's time.)"""
    import threading

    import uvicorn

    from rprm_lite.serve.connections import SHUTDOWN_GRACE_S, protocol_class

    async def large_answer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(200):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(large_answer, http=protocol_class(max_connections=8, read_timeout=5),
                                               lifespan="off", log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listening.getsockname())
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.5)  # the server's buffers fill; its writes wait for a reader that never comes
        started = time.monotonic()
        server.should_exit = True
        thread.join(10)
        took = time.monotonic() - started
        client.close()
    assert not thread.is_alive() and took < SHUTDOWN_GRACE_S + 1.5, took
