"""`ServeConfig`: the server's own settings, and the bind rule. What it serves is a `ScoreJob` (`rprm_lite/job.py`:
the model, its adapters, the caches, --show-critiques as the request option's default; the scoring defaults are
its `ScoreConfig` overrides), the same as `score` runs.

The server binds loopback by default. Any other address exposes the model to the network, so it needs an
API key, read from the environment variable that `api_key_env` names (never from the command line, where
other users of the machine could read it in the process list). The limits bound what one request or one
client may cost: critiques and tokens per request (by default the server's own --k and --max-tokens), scoring
time per request, open connections, and the time a client has to send its request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rprm_lite.config import INT32_MAX, MAX_K, ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.options import Options, Settings, option

DEFAULT_MAX_BODY_BYTES = 2**20
DEFAULT_MAX_STEPS = 256
DEFAULT_MAX_QUEUE = 16
MIN_API_KEY_CHARS = 16
DEFAULT_REQUEST_TIMEOUT_S = 3600.0
DEFAULT_READ_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 64
# an origin as a browser sends it: scheme://host[:port], a desktop app's own scheme too (tauri://localhost)
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://([^/\s:\[\]]+|\[[0-9a-f:.]+\])(:\d{1,5})?", re.IGNORECASE)


@dataclass(frozen=True)
class ServeConfig(Settings):
    """The options of `rprm-lite serve` besides the score options (rprm_lite/options.py)."""

    WHAT = "server settings"
    DASHED = True

    host: str = option("127.0.0.1", help="Address to bind; any other than loopback needs --api-key-env.")
    port: int = option(8080, help="Port; 0 picks a free one (the URL is printed).")
    max_queue: int = option(DEFAULT_MAX_QUEUE, help="Requests that may wait while one is scored; more get 503 "
                            "with Retry-After.")
    max_body_bytes: int = option(DEFAULT_MAX_BODY_BYTES, help="Largest request body.")
    max_steps: int = option(DEFAULT_MAX_STEPS, help="Most steps per solution.")
    max_request_k: int | None = option(None, help="Most critiques per step a request may ask for (k); more get 422. "
                                       "Default: the server's --k.")
    max_request_tokens: int | None = option(None, help="Most tokens per critique a request may ask for (max_tokens); "
                                            "more get 422. Default: the server's --max-tokens.")
    request_timeout: float = option(DEFAULT_REQUEST_TIMEOUT_S, help="Seconds of scoring one request may take; then "
                                    "it stops with a time_limit error. 0 for no limit.")
    read_timeout: float = option(DEFAULT_READ_TIMEOUT_S, help="Seconds a client has to send a request's head, and "
                                 "then its body; a slower one is dropped (head) or gets 408 (body).")
    max_connections: int = option(DEFAULT_MAX_CONNECTIONS, help="Open connections; past it, the oldest one that "
                                  "has not sent a whole request is closed (so stalled clients cannot hold the "
                                  "server's files), or the new one gets 503 when none can go.")
    api_key_env: str | None = option(None, help="Environment variable holding the API key requests must send as "
                                     "'Authorization: Bearer <key>'.", metavar="NAME")
    cors_origins: tuple[str, ...] = option((), help="Origin allowed to call from a browser (repeat for more); "
                                           "none by default.", flag="--cors-origin", metavar="ORIGIN",
                                           cli_type=list[str] | None, cli_default=None, parse=tuple)

    def problems(self) -> Iterator[str]:
        if not 0 <= self.port <= 65535:
            yield f"port must be between 0 and 65535, got {self.port}"
        yield from self.at_least(max_queue=0, max_body_bytes=1024, max_steps=1, request_timeout=0)
        if self.max_request_k is not None and not 1 <= self.max_request_k <= MAX_K:
            yield f"max-request-k must be between 1 and {MAX_K}, got {self.max_request_k}"
        if self.max_request_tokens is not None and not 1 <= self.max_request_tokens <= INT32_MAX:
            yield f"max-request-tokens must be between 1 and {INT32_MAX}, got {self.max_request_tokens}"
        if self.read_timeout <= 0:
            yield f"read-timeout must be more than 0 seconds, got {self.read_timeout}"
        if self.max_connections < self.max_queue + 2:
            yield (f"max-connections must be at least max-queue + 2 ({self.max_queue + 2}: the running request, "
                   f"the waiting ones and one to answer), got {self.max_connections}")
        for origin in self.cors_origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                yield (f"cors-origin must be * or an origin as browsers send it, scheme://host[:port] with no path "
                       f"(http://localhost:3000, app://tutor), got {origin!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cors_origins": list(self.cors_origins)}

    def with_limits(self, defaults: ScoreConfig) -> ServeConfig:
        """The per-request limits resolved against the server's default settings: left out, a limit is the
        default itself; a default above its limit would refuse every request, so it is an error."""
        limits = self.replace(max_request_k=self.max_request_k or defaults.k,
                              max_request_tokens=self.max_request_tokens or defaults.max_tokens)
        for name, option_name, value in (("max_request_k", "k", defaults.k),
                                         ("max_request_tokens", "max-tokens", defaults.max_tokens)):
            if value > getattr(limits, name):
                raise InputError(f"--{option_name} {value} is above --{limits.label(name)} {getattr(limits, name)}: "
                                 "every request would be refused; raise the limit or lower the default")
        return limits


SERVE_OPTIONS = Options(ServeConfig)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def api_key(cfg: ServeConfig, environ: Mapping[str, str]) -> str | None:
    """The key requests must send, or None; refuses a non-loopback bind without one."""
    if cfg.api_key_env is None:
        if not is_loopback(cfg.host):
            raise InputError(f"refusing to bind {cfg.host}: only loopback addresses (127.0.0.1, ::1, localhost) "
                             "are served without an API key; set one in an environment variable and pass "
                             "--api-key-env NAME")
        return None
    key = environ.get(cfg.api_key_env, "")
    if len(key) < MIN_API_KEY_CHARS:
        found = "is not set" if not key else f"holds {len(key)} characters"
        raise InputError(f"--api-key-env {cfg.api_key_env}: the environment variable {found}; "
                         f"put an API key of at least {MIN_API_KEY_CHARS} characters in it")
    return key
