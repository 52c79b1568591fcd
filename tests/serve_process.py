"""A real `rprm-lite serve` process on loopback and the plain HTTP clients its tests talk to it with."""

from __future__ import annotations

import http.client
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from rprm_lite.bench.child_processes import start_child

FAST = ["--k", "2", "--max-tokens", "3", "--seed", "3", "--threads", "1"]
LONG_ALLOWED = ["--max-request-tokens", "4000"]  # a server that takes the LONG request (its default limit is 3)
SOLUTION = {"id": "s1", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "The answer is 5."]}
LONG = {"id": "long", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "So 5.", "The answer is 5."],
        "options": {"max_tokens": 4000, "all_steps": True}}
JSON = {"Content-Type": "application/json"}


class Server:
    """A `rprm-lite serve` subprocess; its stderr is collected as it comes."""

    def __init__(self, model, *args, env=None, open_files: int | None = None) -> None:
        """`open_files`: the process's limit on open files (RLIMIT_NOFILE), as on a machine that has few."""
        limit = None if open_files is None else (
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
        self.proc = start_child([sys.executable, "-m", "rprm_lite.cli", "serve", "--model", str(model),
                                 *map(str, args)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                env=env, preexec_fn=limit)
        self.lines: list[str] = []
        self.url: str | None = None
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ")[1].strip()
                self.ready.set()
        self.ready.set()

    def wait_listening(self, timeout: float = 120) -> Server:
        assert self.ready.wait(timeout), "the server did not start"
        assert self.url, f"the server exited: {''.join(self.lines)}"
        return self

    def wait_healthy(self, timeout: float = 120) -> list[tuple[int, dict]]:
        """Poll /health until 200; returns every answer seen."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _, body = call(self, "GET", "/health")
            seen.append((status, json.loads(body)))
            if status == 200:
                return seen
            time.sleep(0.005)
        raise AssertionError(f"not healthy after {timeout} s: {seen[-1]}")

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname, parts.port

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once the process has ended and all of its stderr is in `lines`."""
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()


def call(server: Server, method: str, path: str, body=None, headers=None, timeout: float = 120):
    """(status, headers, body bytes) of one request on a fresh connection; a tuple body is sent chunked. A
    body is sent as JSON (Content-Type: application/json) unless `headers` name another type."""
    conn = http.client.HTTPConnection(*server.address, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        chunked = isinstance(data, tuple)
        headers = {**(JSON if data is not None else {}), **(headers or {})}
        conn.request(method, path, body=iter(data) if chunked else data, headers={
            name: value for name, value in headers.items() if value is not None}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def error_of(status_body):
    status, _, body = status_body
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"type", "message"}, data
    return status, data["error"]["type"], data["error"]["message"]


def queue(server: Server) -> dict:
    return json.loads(call(server, "GET", "/v1/info")[2])["queue"]


def wait_queue(server: Server, timeout: float = 60, **expected) -> float:
    """Seconds until /v1/info's queue shows `expected` (e.g. running=False)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = queue(server)
        if all(state[key] == value for key, value in expected.items()):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"queue is {state}, expected {expected}")


def open_stream(server: Server, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(*server.address, timeout=120)
    conn.request("POST", "/v1/score", body=json.dumps({**body, "stream": True}), headers=JSON)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type") == "application/x-ndjson"
    return conn, response


def send_raw(server: Server, body: dict) -> socket.socket:
    """Send a request and leave its answer unread (a client that waits)."""
    sock = socket.create_connection(server.address)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "rprm_lite.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
