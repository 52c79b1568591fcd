"""uvicorn's h11 connection with the limits uvicorn lacks: how many connections, how long to send a head.

uvicorn bounds neither the connections it holds nor the time a client takes to send a request's head
(`limit_concurrency` answers 503 to a *request* once too many connections are open, so a few hundred
stalled clients would make it refuse /health; `timeout_keep_alive` only runs between requests). So:
- a connection that has not sent a whole request head within `read_timeout` seconds (from its opening,
  or from the end of its previous answer) is closed; the body's own deadline is the `Guard`'s (408);
- past `max_connections`, opening one closes the oldest connection that holds no whole request (stalled
  or idle), so the server's open files stay bounded and a new client (a supervisor polling /health) is
  still answered; when every connection holds a request in progress, the new one gets 503;
- on shutdown a connection that holds no whole request is closed at once, and one whose client does not
  read its answer is cut after `SHUTDOWN_GRACE_S`, so a slow client cannot hold the exit.
Only `server.serve` imports this module, after checking that uvicorn is installed.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

SHUTDOWN_GRACE_S = 1.0  # for a streaming client to read its last event once the server is stopping
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


def protocol_class(*, max_connections: int, read_timeout: float) -> type[H11Protocol]:
    class LimitedH11(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.since = self.loop.time()
            self.head_timer = self.loop.call_later(read_timeout, self.head_timed_out)
            if len(open_connections(self.connections)) > max_connections:
                self.make_room()

        def make_room(self) -> None:
            idle = [c for c in open_connections(self.connections) if c is not self and c.holds_no_request()]
            if idle:
                min(idle, key=lambda c: c.since).transport.abort()
                return
            message = json.dumps({"error": {"type": "too_many_connections", "message": (
                f"{max_connections} connections are open, each with a request in progress (--max-connections); "
                "retry later")}}).encode()
            self.transport.write(BUSY % (len(message), message))
            self.transport.close()

        def holds_no_request(self) -> bool:
            """True before a whole request has arrived (nothing sent yet, head or body partly sent), and
            between requests on a kept-alive connection."""
            return (self.cycle is None or self.cycle.response_complete
                    or self.conn.their_state in (h11.IDLE, h11.SEND_BODY))

        def head_timed_out(self) -> None:
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self.transport.abort()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.since = self.loop.time()
            self.head_timer.cancel()
            self.head_timer = self.loop.call_later(read_timeout, self.head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self.head_timer.cancel()
            super().connection_lost(exc)

        def shutdown(self) -> None:
            if self.holds_no_request():
                self.transport.abort()
                return
            super().shutdown()
            self.loop.call_later(SHUTDOWN_GRACE_S, self.transport.abort)

    return LimitedH11


def open_connections(connections: set[Any]) -> list[Any]:  # uvicorn's connections: each a LimitedH11
    return [c for c in connections if not c.transport.is_closing()]
