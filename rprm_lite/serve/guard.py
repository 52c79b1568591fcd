"""The server's trust boundary, as two pure ASGI middlewares (so streaming and disconnects pass through).

`Boundary` (outermost) decides who may talk to the server at all, the way local model servers do since
their DNS-rebinding advisories (Ollama's CVE-2024-28224 host check; llama-server's --cors-origins):
- a keyless server answers only requests whose `Host` is a loopback name or address (localhost, 127.0.0.0/8,
  [::1]) or the address it is bound to. A web page whose own name was rebound to 127.0.0.1 sends its own
  name as Host, so it is refused before it can read anything. A server with an API key does not check Host:
  the key is what keeps others out, a browser never attaches it by itself (it is no cookie), so a rebound
  page holds nothing to send; and a server on the network is reached by names it cannot know (a LAN address,
  a host name, a reverse proxy's), which a Host list would refuse.
- a request from a browser page on another origin (an `Origin` header that is neither the server's own
  origin nor one listed with --cors-origin) is refused with 403, whatever its method or content type: a
  "simple" cross-origin POST needs no preflight, so answering it without CORS headers would still score it.
  Listed origins get CORS answers, preflight included (Starlette's CORSMiddleware, inside this one).

`Guard` (inside) checks each request: the API key (compared in constant time), a JSON content type on
bodies that are scored (a `text/plain` or form body is what a page can send without a preflight: 415), the
body size, and the time the client takes to send its body (408 past --read-timeout).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse

from rprm_lite.serve.bodies import ApiError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = ("/health",)  # answered without the API key: a supervisor polls it
JSON_BODY_PATHS = ("/v1/score", "/v1/prompt")  # the bodies that must say they are JSON
LOOPBACK_NAMES = ("localhost", "localhost.")


def host_name(header: str) -> str | None:
    """The host of a Host header, lower-cased and without its port; None when it is no valid host[:port]."""
    value = header.strip().lower()
    if value.startswith("["):  # an IPv6 address, [::1]:8080
        host, bracket, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
        return host if bracket and (not rest or (rest.startswith(":") and port.isdigit())) else None
    host, colon, port = value.partition(":")
    if not host or (colon and not port.isdigit()) or any(c in host for c in "@/\\ "):
        return None
    return host


def is_loopback_host(host: str, bound: str) -> bool:
    if host in LOOPBACK_NAMES or host == bound.lower().strip("[]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Boundary:
    """Host (keyless servers only) and Origin checks, before anything else answers."""

    def __init__(self, app: ASGIApp, *, check_host: bool, bound_host: str, cors_origins: tuple[str, ...]) -> None:
        self.app, self.check_host, self.bound_host = app, check_host, bound_host
        self.cors_origins = {origin.lower() for origin in cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.check_host and not is_loopback_host(host_name(host) or "", self.bound_host):
            return await send_error(scope, send, ApiError(
                403, "forbidden_host", f"Host {host[:80]!r} is not this server's: without an API key it answers only "
                "requests addressed to localhost, a loopback address or the address it is bound to (a guard "
                "against DNS rebinding); call it as http://127.0.0.1:PORT"))
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), host, scope):
            return await send_error(scope, send, ApiError(
                403, "forbidden_origin", f"Origin {origin.decode('latin-1')[:80]!r} may not call this server: a page "
                "on another origin is refused unless the server is started with --cors-origin for it"))
        return await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str, scope: Scope) -> bool:
        origin = origin.strip().lower()
        same = f"{scope.get('scheme', 'http')}://{host.strip().lower()}"
        return origin == same or "*" in self.cors_origins or origin in self.cors_origins


class Guard:
    """The API key, the content type, then the body: read here (at most `max_body_bytes`, within
    `read_timeout` seconds) and replayed to the app."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, read_timeout: float) -> None:
        self.app, self.api_key, self.max_body_bytes, self.read_timeout = app, api_key, max_body_bytes, read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            self._check(scope)
            body = await self._read_body(scope, receive)
        except ApiError as exc:
            return await send_error(scope, send, exc)
        if body is None:
            return  # the client left before sending its body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check(self, scope: Scope) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        if self.api_key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(headers, self.api_key):
            raise ApiError(401, "unauthorized", "missing or wrong API key; send 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})
        if scope["method"] == "POST" and scope["path"] in JSON_BODY_PATHS:
            kind = headers.get(b"content-type", b"").decode("latin-1")
            if kind.partition(";")[0].strip().lower() != "application/json":
                raise ApiError(415, "unsupported_media_type", f"request body: Content-Type must be application/json, "
                                                              f"got {kind[:60]!r}; send the body as JSON with that "
                                                              "header", headers={"Accept-Post": "application/json"})
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(int(declared))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        received = [0]  # bytes so far, for the message when time runs out
        try:  # wait_for, not asyncio.timeout: the project runs on Python 3.10 too
            return await asyncio.wait_for(self._collect_body(receive, received), self.read_timeout)
        except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
            raise ApiError(408, "request_timeout", f"request body: {received[0]:,} bytes arrived in "
                                                   f"{self.read_timeout:g} s (--read-timeout) and the rest did not; "
                                                   "send the whole body at once",
                           headers={"Connection": "close"}) from None

    async def _collect_body(self, receive: Receive, received: list[int]) -> bytes | None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            received[0] += len(chunks[-1])
            if received[0] > self.max_body_bytes:
                raise self._too_large(received[0], at_least=True)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _authorized(self, headers: dict[bytes, bytes], api_key: str) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), api_key.encode())

    def _too_large(self, size: int, *, at_least: bool = False) -> ApiError:
        return ApiError(413, "body_too_large", f"request body: {'more than ' if at_least else ''}{size:,} bytes; "
                                               f"this server takes at most {self.max_body_bytes:,} (--max-body-bytes)")


async def send_error(scope: Scope, send: Send, error: ApiError) -> None:
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
