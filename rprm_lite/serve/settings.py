"""`ServeConfig`: the server's own settings (the scoring defaults are a `ScoreConfig`), and the bind rule.

The server binds loopback by default. Any other address exposes the model to the network, so it needs an
API key, read from the environment variable that `api_key_env` names (never from the command line, where
other users of the machine could read it in the process list).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rprm_lite.errors import InputError

DEFAULT_MAX_BODY_BYTES = 2**20
DEFAULT_MAX_STEPS = 256
DEFAULT_MAX_QUEUE = 16
MIN_API_KEY_CHARS = 16


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_queue: int = DEFAULT_MAX_QUEUE  # requests waiting while one is scored; more get 503
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_steps: int = DEFAULT_MAX_STEPS  # per solution
    api_key_env: str | None = None
    cors_origins: tuple[str, ...] = ()
    show_critiques: bool = False  # the default of the request option of that name
    cache: str | None = None  # a folder keeping step results across requests and restarts (--cache)

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise InputError("invalid server settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cors_origins": list(self.cors_origins)}


def _problems(cfg: ServeConfig):
    if not 0 <= cfg.port <= 65535:
        yield f"port must be between 0 and 65535, got {cfg.port}"
    if cfg.max_queue < 0:
        yield f"max-queue must be at least 0, got {cfg.max_queue}"
    if cfg.max_body_bytes < 1024:
        yield f"max-body-bytes must be at least 1024, got {cfg.max_body_bytes}"
    if cfg.max_steps < 1:
        yield f"max-steps must be at least 1, got {cfg.max_steps}"
    for origin in cfg.cors_origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            yield f"cors-origin must be * or start with http:// or https://, got {origin!r}"


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
