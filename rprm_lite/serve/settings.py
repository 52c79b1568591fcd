"""`ServeConfig`: the server's own settings (the scoring defaults are a `ScoreConfig`), and the bind rule.

The server binds loopback by default. Any other address exposes the model to the network, so it needs an
API key, read from the environment variable that `api_key_env` names (never from the command line, where
other users of the machine could read it in the process list).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rprm_lite.errors import InputError
from rprm_lite.options import Options, Settings, option

DEFAULT_MAX_BODY_BYTES = 2**20
DEFAULT_MAX_STEPS = 256
DEFAULT_MAX_QUEUE = 16
MIN_API_KEY_CHARS = 16


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
    api_key_env: str | None = option(None, help="Environment variable holding the API key requests must send as "
                                     "'Authorization: Bearer <key>'.", metavar="NAME")
    cors_origins: tuple[str, ...] = option((), help="Origin allowed to call from a browser (repeat for more); "
                                           "none by default.", flag="--cors-origin", metavar="ORIGIN",
                                           cli_type=list[str] | None, cli_default=None, parse=tuple)
    # these two are options of `score` too (rprm_lite/commands.JOB_OPTIONS): the default of the request option
    # of that name, and a folder keeping step results across requests and restarts
    show_critiques: bool = False
    cache: str | None = None

    def problems(self) -> Iterator[str]:
        if not 0 <= self.port <= 65535:
            yield f"port must be between 0 and 65535, got {self.port}"
        yield from self.at_least(max_queue=0, max_body_bytes=1024, max_steps=1)
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                yield f"cors-origin must be * or start with http:// or https://, got {origin!r}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cors_origins": list(self.cors_origins)}


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
