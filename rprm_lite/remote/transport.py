"""JSON over HTTP to one inference server, with retries: the only module of the remote backend that does I/O.

Standard library only (urllib), so the runtime gains no dependency. A request is retried with
exponential backoff when the server answers 429 or 5xx, times out, or cannot be reached; after the
last try the error names the server, the path and what went wrong. Any other 4xx is the request's
fault and is not retried. An answer that is not a JSON object is an error at once (retrying the same
request to a server that speaks another protocol only wastes time).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from rprm_lite.errors import RprmError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ERROR_TEXT = 300


class RemoteError(RprmError):
    """A server could not be reached, kept failing, or answered something we cannot read."""

    exit_code = 5


@dataclass(frozen=True)
class Retry:
    tries: int = 4  # attempts in all, the first included
    backoff: float = 0.5  # seconds before the second attempt; doubled after each failure
    timeout: float = 600.0  # seconds a single request may take (a long critique is slow)


class ServerClient:
    """One server's base URL, its API key (from an environment variable, never a flag) and the retry rule."""

    def __init__(self, url: str, *, api_key_env: str | None = None, retry: Retry = Retry()) -> None:
        self.url = url.rstrip("/")
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
                raw = self._send(method, where, data)
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

    def _send(self, method: str, where: str, data: bytes | None) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(where, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.retry.timeout) as answer:
                return answer.read()
        except urllib.error.HTTPError as exc:
            text = _short(exc.read())
            if exc.code in RETRY_STATUSES:
                raise _Transient(f"HTTP {exc.code} {text}".strip()) from None
            raise RemoteError(f"{where}: HTTP {exc.code} {text}".strip()) from None
        except TimeoutError:
            raise _Transient(f"no answer within {self.retry.timeout:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise _Transient(f"no answer within {self.retry.timeout:g} s") from None
            raise _Transient(f"cannot connect ({exc.reason})") from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Transient(f"connection failed ({type(exc).__name__}: {exc})") from None


class _Transient(Exception):
    """A failure worth another try."""


def _parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RemoteError(f"{where}: the answer is not JSON ({_short(raw) or 'empty'}); is this an "
                          "OpenAI-compatible server?") from None
    if not isinstance(value, dict):
        raise RemoteError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _short(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 3] + "..."
