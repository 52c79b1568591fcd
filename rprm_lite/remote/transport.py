"""JSON over HTTP to one inference server, with retries: the only module of the remote backend that does I/O.

Standard library only (http.client), so the runtime gains no dependency. An answer is untrusted input:
- each try has a total deadline (`timeout`), kept by a timer that shuts the socket when it passes, so a
  server that drips one byte at a time fails in bounded time (a socket timeout is per read only);
- the whole answer is read up to MAX_ANSWER_BYTES, never more (an endless body is an error, not a
  MemoryError), and parsed by the runtime's bounded JSON reader (`rprm_lite.jsonl.loads`: depth, numbers
  a float cannot hold, lone surrogates);
- a redirect is never followed: the API key would go to whatever host the server names, and a POST
  would be replayed as a GET; the error names where it points, so the user can pass that URL instead.
A request is retried with exponential backoff when the server answers 408, 429 or 5xx, runs past the
deadline, or cannot be reached; after the last try the error names the server, the path and what went
wrong. Any other status is the request's fault and is not retried, and neither is an answer that is not
a JSON object (retrying the same request to a server that speaks another protocol only wastes time).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rprm_lite.errors import InputError, RprmError
from rprm_lite.jsonl import loads

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ERROR_TEXT = 300
MAX_ANSWER_BYTES = 64 * 2**20  # K=255 critiques of 4096 tokens with their token ids fit in a few MiB
MAX_ERROR_BYTES = 64 * 2**10  # of an error answer, only the start is shown
CHUNK = 2**16


class RemoteError(RprmError):
    """A server could not be reached, kept failing, or answered something we cannot read."""

    exit_code = 5


@dataclass(frozen=True)
class Retry:
    tries: int = 4  # attempts in all, the first included
    backoff: float = 0.5  # seconds before the second attempt; doubled after each failure
    timeout: float = 600.0  # seconds a single request may take in all (a long critique is slow)


class ServerClient:
    """One server's base URL (validated by `rprm_lite.remote.settings.base_url`), its API key (from an
    environment variable, never a flag) and the retry rule."""

    def __init__(self, url: str, *, api_key_env: str | None = None, retry: Retry = Retry()) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        assert parts.hostname is not None, "a base URL checked by base_url has a host"
        self._host, self._port, self._prefix = parts.hostname, parts.port, parts.path
        self.retry = retry
        self.requests = 0  # answered requests, and the seconds spent waiting for them (for benchmarks)
        self.wait_seconds = 0.0
        self._count = threading.Lock()
        self.api_key = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise RemoteError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, json.dumps(body).encode("utf-8"))

    def get(self, path: str) -> dict[str, Any]:
        return self._call("GET", path, None)

    def _call(self, method: str, path: str, data: bytes | None) -> dict[str, Any]:
        where = f"{self.url}{path}"
        delay = self.retry.backoff
        for attempt in range(1, self.retry.tries + 1):
            try:
                started = time.perf_counter()
                raw = self._send(method, path, data, where)
                with self._count:
                    self.requests += 1
                    self.wait_seconds += time.perf_counter() - started
                return _parse(raw, where)
            except _Transient as exc:
                if attempt == self.retry.tries:
                    raise RemoteError(f"{where}: {exc} (gave up after {attempt} tries)") from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, data: bytes | None, where: str) -> bytes:
        """One try: the answer's bytes within the deadline, or _Transient / RemoteError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        connection = self._connection(self._host, self._port, timeout=self.retry.timeout)
        deadline = _Deadline(connection, self.retry.timeout)
        try:
            connection.request(method, self._prefix + path, body=data, headers=headers)
            answer = connection.getresponse()
            status, location = answer.status, answer.getheader("Location")
            raw = _read_capped(answer, MAX_ANSWER_BYTES if status < 300 else MAX_ERROR_BYTES, where)
        except (OSError, http.client.HTTPException) as exc:
            if deadline.passed or isinstance(exc, (TimeoutError, socket.timeout)):
                raise _Transient(f"no answer within {self.retry.timeout:g} s") from None
            if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
                raise _Transient(f"cannot connect ({exc})") from None
            raise _Transient(f"connection failed ({type(exc).__name__}: {exc})") from None
        finally:
            deadline.cancel()
            connection.close()
        if deadline.passed:  # the shut socket read as the end of the answer
            raise _Transient(f"no answer within {self.retry.timeout:g} s")
        return _check_status(status, location, raw, where)


class _Deadline:
    """Shuts the connection's socket when `seconds` pass, which ends any read or write blocked on it."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.passed = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.passed = True
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _read_capped(answer: http.client.HTTPResponse, cap: int, where: str) -> bytes:
    declared = answer.getheader("Content-Length")
    # an error answer (a smaller cap) is cut short below instead: its start is enough to show, and a large 502
    # page from a proxy must stay a retried failure, not a refused answer
    if cap == MAX_ANSWER_BYTES and declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise RemoteError(f"{where}: the answer is {_size(int(declared))}, more than {_size(cap)}; "
                          "this is not an answer to a scoring request")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = answer.read1(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            if cap < MAX_ANSWER_BYTES:  # an error answer: its start is enough to show
                return b"".join(chunks)
            raise RemoteError(f"{where}: the answer goes on for more than {_size(cap)}; "
                              "this is not an answer to a scoring request")
        chunks.append(chunk)


def _check_status(status: int, location: str | None, raw: bytes, where: str) -> bytes:
    if 200 <= status < 300:
        return raw
    text = _short(raw)
    if status in RETRY_STATUSES:
        raise _Transient(f"HTTP {status} {text}".strip())
    if 300 <= status < 400:
        raise RemoteError(f"{where}: HTTP {status} redirect to {_short((location or '(nowhere)').encode())}; "
                          "redirects are not followed (the API key would go along, and a POST would become a "
                          "GET): pass the URL the server means as --backend")
    raise RemoteError(f"{where}: HTTP {status} {text}".strip())


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count} bytes"


class _Transient(Exception):
    """A failure worth another try."""


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        value = loads(raw, where=where)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RemoteError(f"{where}: the answer is not JSON ({_short(raw) or 'empty'}); is this an "
                          "OpenAI-compatible server?") from None
    except InputError as exc:  # deep nesting, a number no float holds, a lone surrogate: the server's fault
        raise RemoteError(str(exc)) from None
    if not isinstance(value, dict):
        raise RemoteError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _short(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 3] + "..."
