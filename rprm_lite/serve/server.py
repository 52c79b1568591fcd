"""Running the app: checks first (settings, bind rule, extra installed, model file), then uvicorn.

The model loads on the engine thread while the server already answers /health with "loading".
SIGTERM and Ctrl-C cancel every job (a streaming client gets an error event, a waiting one a 503), close
the connections (at once where no whole request has arrived, within a second where the client does not
read its answer: `connections`), free the model and return normally, so the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import TYPE_CHECKING

from rprm_lite.errors import InputError, RprmError
from rprm_lite.job import ScoreJob
from rprm_lite.serve.settings import ServeConfig, api_key
from rprm_lite.serve.worker import EngineWorker

if TYPE_CHECKING:  # the serve extra's packages are imported when the server starts (`_import_stack`)
    import uvicorn
    from fastapi import FastAPI
    from uvicorn.protocols.http.h11_impl import H11Protocol

INSTALL_HINT = "pip install 'rprm-lite[serve]'"
OWN_FILES = 64  # the model file, pipes, the listening socket, threads' handles: what the server opens itself
GRACEFUL_SHUTDOWN_S = 5  # a backstop: `connections` closes every connection within about a second


def serve(job: ScoreJob, serve_config: ServeConfig, *, on_ready: Callable[[str], None]) -> None:
    """Serve `job` (its model and adapters, checked before the server starts; its settings as the requests'
    defaults) until SIGTERM or Ctrl-C; `on_ready` gets the URL once the port is bound."""
    from rprm_lite.adapter_file import load_model_info
    from rprm_lite.scorer import resolve_settings
    from rprm_lite.scoring import Scorer
    from rprm_lite.step_cache import StepCache

    if job.remote is not None:
        raise InputError("`rprm-lite serve` serves the local engine; it takes no --backend")
    key = api_key(serve_config, os.environ)
    _ensure_open_files(serve_config.max_connections)
    uvicorn, create_app, protocol_class = _import_stack()
    info = load_model_info(job.model, job.lora)
    defaults, calibration = resolve_settings(info, None, job.overrides)
    serve_config = serve_config.with_limits(defaults)
    cache = StepCache(job.cache)  # in memory, and in the --cache folder when one is given
    load_failure: list[BaseException] = []

    def load_failed(exc: BaseException) -> None:
        load_failure.append(exc)
        server.should_exit = True

    worker = EngineWorker(lambda: Scorer(info, cache=cache, prefix_cache=job.prefix_cache,
                                         settings=(defaults, calibration)),
                          max_queue=serve_config.max_queue,
                          on_load_failed=load_failed)
    app = create_app(worker, serve_config=serve_config, job=job, defaults=defaults, model=info, api_key=key,
                     calibration=calibration)
    _log_to_stderr()
    http = protocol_class(max_connections=serve_config.max_connections, read_timeout=serve_config.read_timeout)
    # the backlog is also how many connections asyncio accepts at once, before the cap can close any
    config = uvicorn.Config(app, host=serve_config.host, port=serve_config.port, http=http, lifespan="on",
                            log_level="warning", access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                            backlog=serve_config.max_connections)
    server = _new_server(config, worker=worker, on_ready=on_ready)
    with _bind(serve_config.host, serve_config.port) as sock:
        server.run(sockets=[sock])
    if load_failure:
        exc = load_failure[0]
        raise exc if isinstance(exc, RprmError) else RprmError(f"could not load the model: {exc}")


def _ensure_open_files(max_connections: int) -> None:
    """Room for the connections (twice the cap: one batch accepted at once can pass it until the cap closes
    the oldest) and the process's own files; the soft limit is raised to the hard one when that is short."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to check
        return
    needed = 2 * max_connections + OWN_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            return
        except (ValueError, OSError):  # macOS: an "unlimited" hard limit still stops at kern.maxfilesperproc
            pass
    may_open = soft if hard == resource.RLIM_INFINITY else hard  # what setrlimit could not raise it past
    raise InputError(f"--max-connections {max_connections} needs about {needed} open files, and this process may "
                     f"open {may_open} (ulimit -n); lower --max-connections to at most "
                     f"{max(1, (may_open - OWN_FILES) // 2)}")


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one `error:` line (uvicorn would log it)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise RprmError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _import_stack() -> tuple[ModuleType, Callable[..., FastAPI], Callable[..., type[H11Protocol]]]:
    try:
        import uvicorn

        from rprm_lite.serve.app import create_app
        from rprm_lite.serve.connections import protocol_class
    except ImportError as exc:
        raise RprmError(f"`rprm-lite serve` needs optional dependencies that are not installed "
                        f"({exc.name or exc}); install them with: {INSTALL_HINT}") from None
    return uvicorn, create_app, protocol_class


def _log_to_stderr() -> None:
    logger = logging.getLogger("rprm_lite.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("rprm-lite serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _new_server(config: uvicorn.Config, *, worker: EngineWorker, on_ready: Callable[[str], None]) -> uvicorn.Server:
    import uvicorn  # already imported by `_import_stack`

    class Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config, *, worker: EngineWorker, on_ready: Callable[[str], None]) -> None:
            super().__init__(config)
            self.worker, self.on_ready = worker, on_ready

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and self.servers:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                self.on_ready(f"http://{f'[{host}]' if ':' in host else host}:{port}")
                self.worker.start()  # the model loads while /health already answers "loading"

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.worker.shutdown()  # in-flight scoring stops within one decode, so connections close soon
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own version raises the signal again after a graceful shutdown, which would end the
            # process with 128 + the signal's number; a server that shut down cleanly exits 0
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server(config, worker=worker, on_ready=on_ready)
