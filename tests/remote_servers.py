"""Servers on loopback for the remote backend's tests: the real `python -m llama_cpp.server`, and a small
stdlib HTTP server that answers with scripted replies (for the faults a real server cannot be made to show,
and for the answers of servers that cannot run here)."""

from __future__ import annotations

import importlib.metadata
import json
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rprm_lite.bench.child_processes import start_child, stop_child
from rprm_lite.weight_placement import llama_cpp_server_command, llama_server_args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def llama_cpp_server(model: Path, *, startup_timeout: float = 120.0) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port, one CPU thread."""
    port = free_port()
    with _serving([*llama_cpp_server_command(), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                   "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1"],
                  f"http://127.0.0.1:{port}", "llama_cpp.server", startup_timeout) as url:
        yield url


def llama_server_binary() -> Path:
    """Where `make llama-server` puts llama.cpp's own server, built from the installed llama-cpp-python's source."""
    version = importlib.metadata.version("llama-cpp-python")
    return Path(__file__).resolve().parents[1] / "build" / "llama-server" / version / "bin" / "llama-server"


@contextmanager
def llama_server(model: Path, *, startup_timeout: float = 120.0) -> Iterator[str]:
    """llama.cpp's `llama-server` on a free loopback port: one thread, one slot, the buffer rule of every load
    (`--no-repack` where extra buffer types are off), no web UI; it dies with the test process."""
    port = free_port()
    with _serving([str(llama_server_binary()), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                   "--ctx-size", "4096", "--parallel", "1", "--threads", "1", "--threads-batch", "1",
                   "--no-webui", "--no-warmup", *llama_server_args()],
                  f"http://127.0.0.1:{port}", "llama-server", startup_timeout) as url:
        yield url


@contextmanager
def _serving(command: list[str], url: str, name: str, startup_timeout: float) -> Iterator[str]:
    """Start `command` (a child that dies with this process), wait until `url`/v1/models answers, yield `url`.
    Its log goes to a file (a pipe nobody reads would stall a chatty server once full)."""
    log = tempfile.TemporaryFile()
    process = start_child(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{name} exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start in time") from None
                time.sleep(0.3)
        yield url
    finally:
        stop_child(process)
        log.close()


# (status, body) or (status, body, headers); a body is bytes (sent with its length), an iterable of byte
# chunks (each flushed as it comes, the end marked by closing the connection), or a callable that is given
# the socket's file and writes every byte itself, status line and headers included (a hostile server)
Reply = Callable[[str, dict[str, Any] | None], tuple[Any, ...]]


class ScriptedServer:
    """Answers every request with `reply(path, body)`; records (path, body) pairs, methods and keys sent."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[tuple[str, dict[str, Any] | None]] = []
        self.authorization: list[str | None] = []
        self.methods: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self._answer(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                self._answer(json.loads(self.rfile.read(length)))

            def _answer(self, body: dict[str, Any] | None) -> None:
                owner.requests.append((self.path, body))
                owner.authorization.append(self.headers.get("Authorization"))
                owner.methods.append(self.command)
                status, raw, *headers = owner.reply(self.path, body)
                try:
                    self._send(status, raw, headers[0] if headers else {})
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def _send(self, status: int, raw: Any, headers: dict[str, str]) -> None:
                if callable(raw):
                    raw(self.wfile)
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(raw, bytes):
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self.end_headers()
                for chunk in raw:
                    self.wfile.write(chunk)
                    self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path and body is not None]


def drip(raw: bytes, every: float, *, limit: float = 20.0) -> Callable[[Any], None]:
    """A writer that sends `raw` (status line and headers included) one byte every `every` seconds, for at
    most `limit` seconds, so that a client without a total deadline still ends its test."""
    def write(wfile: Any) -> None:
        stop = time.monotonic() + limit
        for byte in raw:
            if time.monotonic() > stop:
                return
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(every)
    return write


def endless(chunk: bytes = b" " * 65536, *, limit: float = 20.0) -> Iterator[bytes]:
    """A body that never ends (for at most `limit` seconds)."""
    stop = time.monotonic() + limit
    while time.monotonic() < stop:
        yield chunk


def ok(value: Any) -> tuple[int, bytes]:
    return 200, json.dumps(value).encode()


def models(owned_by: str, name: str = "served-model") -> dict[str, Any]:
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": owned_by}]}
