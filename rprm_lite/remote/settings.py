"""`RemoteConfig`: where and how the remote backend reaches its servers (the recipe stays in `ScoreConfig`).

`--backend local` is today's llama.cpp engine; `--backend URL[,URL...]` scores on OpenAI-compatible
servers. A URL may name its server kind as a scheme prefix (`vllm+http://gpu1:8000`); otherwise the
kind is read from the server's `/v1/models` answer, and an unknown server is treated as plain OpenAI.
A URL is the server's base URL, with or without the `/v1` that OpenAI-style clients write
(`http://127.0.0.1:8080/v1`): it is kept without it, since the dialects name their paths in full.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rprm_lite.errors import InputError

LOCAL = "local"
# the server kinds with a dialect of their own (rprm_lite/remote/dialects.py); "auto" asks the server
SERVER_KINDS = ("auto", "openai", "vllm", "sglang", "llama-server", "llama-cpp-python")
URL_PATTERN = re.compile(r"^(?:(?P<kind>[a-z-]+)\+)?(?P<url>https?://[^\s,/]+(?:/[^\s,]*)?)$")
URL_FORM = "http(s)://HOST:PORT URLs separated by commas (optionally KIND+http://...)"


@dataclass(frozen=True)
class RemoteConfig:
    """Servers, credentials and throughput settings of a remote scoring run."""

    urls: tuple[str, ...]
    kinds: tuple[str, ...] = ()  # one per URL ("auto" when the URL names none)
    server_model: str | None = None  # the served model's name; default: the first the server lists
    api_key_env: str | None = None  # the environment variable that holds the API key
    concurrency: int = 1  # solutions in flight at once (the steps of one solution stay in order)
    top_logprobs: int = 20  # where P(Yes) comes from top logprobs: how many to ask for
    timeout: float = 600.0
    tries: int = 4
    backoff: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        if not self.urls:
            problems.append("--backend needs at least one URL")
        try:
            object.__setattr__(self, "urls", tuple(base_url(url) for url in self.urls))
        except InputError as exc:
            problems.append(str(exc))
        if not self.kinds:
            object.__setattr__(self, "kinds", ("auto",) * len(self.urls))
        if len(self.kinds) != len(self.urls):
            problems.append(f"expected one server kind per URL, got {len(self.kinds)} for {len(self.urls)}")
        problems += [f"unknown server kind {kind!r}; choose one of {', '.join(SERVER_KINDS)}"
                     for kind in self.kinds if kind not in SERVER_KINDS]
        if not 1 <= self.concurrency <= 1024:
            problems.append(f"--concurrency must be between 1 and 1024, got {self.concurrency}")
        if not 1 <= self.top_logprobs <= 1_000_000:
            problems.append(f"top_logprobs must be at least 1, got {self.top_logprobs}")
        if not self.timeout > 0 or self.tries < 1 or self.backoff < 0:
            problems.append("timeout must be > 0, tries >= 1 and backoff >= 0")
        if problems:
            raise InputError("invalid remote settings: " + "; ".join(problems))

    def replace(self, **changes: Any) -> RemoteConfig:
        return dataclasses.replace(self, **changes)


# settings of the local engine that the remote backend does not implement yet: refused, never ignored (the
# calculator writes into a critique while it is generated; a server generates it alone: the same model must not
# score one way locally and another remotely, so `--calculator on`, given or a model file's, is refused; drafts are
# how the local engine decodes, and a server decodes as its own engine does)
UNSUPPORTED = (("adaptive", "--adaptive", "leave out --adaptive"),
               ("calibration", "--calibration", "leave out --calibration"),
               ("calculator", "--calculator on", "give --calculator off"),
               ("draft", "--draft", "leave out --draft (a server drafts as its own engine does)"))


def refuse_unsupported(settings: Mapping[str, Any], *, cache: Any = None, prefix_cache: str = "auto") -> None:
    """Raise InputError naming the first setting (or --cache, --prefix-cache other than auto) the remote backend
    cannot honour yet, so that a run never quietly scores with other settings than asked; checked before any
    request is sent."""
    given = [(flag, remedy) for name, flag, remedy in UNSUPPORTED if settings.get(name) not in (None, False, "off")]
    given += [("--cache", "leave out --cache")] if cache is not None else []
    given += [("--prefix-cache", "leave out --prefix-cache")] if prefix_cache != "auto" else []
    if given:
        flag, remedy = given[0]
        raise InputError(f"{flag} is not supported with --backend URL yet; score with the local engine "
                         f"(--backend local) or {remedy}")


def parse_backend(text: str | None) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """None for the local engine, else (urls, kinds) of `URL[,URL...]`; a bad value is an InputError."""
    if text is None or text.strip() == LOCAL:
        return None
    urls, kinds = [], []
    for part in (p.strip() for p in text.split(",")):
        match = URL_PATTERN.match(part)
        if not match:
            raise InputError(f"--backend: expected 'local' or {URL_FORM}, got {part!r}")
        urls.append(base_url(match.group("url")))
        kinds.append(match.group("kind") or "auto")
    return tuple(urls), tuple(kinds)


def base_url(url: str) -> str:
    """`url` as the base the dialects' paths are added to: scheme, host, port and any path prefix, without a
    trailing `/` or `/v1`; InputError (naming --backend) for what no HTTP client could send a request to."""
    def refuse(why: str) -> InputError:
        return InputError(f"--backend: {why} in {url!r}; expected {URL_FORM}")

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is no number or out of range, an unclosed IPv6 bracket
        raise refuse(str(exc).rstrip(".")) from None
    if parts.scheme not in ("http", "https") or not URL_PATTERN.match(url):
        raise refuse("not an http(s) URL")
    if not url.isascii() or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise refuse("characters other than printable ASCII (write a host in its xn-- form, escape a path)")
    if not parts.hostname:
        raise refuse("no host")
    if port == 0:
        raise refuse("port 0")
    if "@" in parts.netloc:
        raise refuse("credentials in the URL (pass the key with --api-key-env)")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise refuse("a query or fragment (a base URL has neither)")
    path = parts.path.rstrip("/")
    path = path[:-len("/v1")] if path.endswith("/v1") else path
    return f"{parts.scheme}://{parts.netloc}{path}"


def remote_config(backend: str | None, **options: Any) -> RemoteConfig | None:
    """The RemoteConfig of `--backend` and the other remote options given (None values left out);
    None for the local backend, where remote options are refused rather than silently ignored."""
    given = {name: value for name, value in options.items() if value is not None}
    parsed = parse_backend(backend)
    if parsed is None:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise InputError(f"{flags} need --backend URL (a remote server); the local engine does not use them")
        return None
    return RemoteConfig(urls=parsed[0], kinds=parsed[1], **given)
