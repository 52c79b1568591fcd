"""The FastAPI app of `rprm-lite serve`: health, info, prompt and score, over one `EngineWorker`.

Who may call, and what a request may send, is decided first (`guard`: Host, Origin, API key, content
type, body size and read time). Request bodies are read as raw bytes by the `Guard` and validated
by `bodies`, through the same code as the CLI, so that a bad request gets the CLI's own message; the
OpenAPI schema documents the bodies for clients. Every answer other than 200 is `{"error": {"type",
"message"}}`; /health answers `{"status": ...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from rprm_lite import output
from rprm_lite.calibration import Calibration
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.job import ScoreJob
from rprm_lite.model_file import ModelInfo
from rprm_lite.prompt import step_prompt
from rprm_lite.results import SolutionResult
from rprm_lite.serve import bodies, events
from rprm_lite.serve.bodies import ApiError
from rprm_lite.serve.guard import Boundary, Guard
from rprm_lite.serve.settings import ServeConfig
from rprm_lite.serve.worker import DuplicateRequest, EngineWorker, Job, NotReady, QueueFull
from rprm_lite.version import __version__

log = logging.getLogger("rprm_lite.serve")
RETRY_AFTER_S = "1"
DISCONNECT_POLL_S = 0.05  # how often a waiting non-streaming request checks that its client is still there
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # the client's X-Request-Id, to cancel a request by it
CANCEL_TOKEN = re.compile(r"[A-Za-z0-9._:-]{16,128}")  # the secret that lets only its sender cancel a request


def create_app(worker: EngineWorker, *, serve_config: ServeConfig, job: ScoreJob, defaults: ScoreConfig,
               model: ModelInfo, api_key: str | None = None, calibration: Calibration | None = None) -> FastAPI:
    """The caller starts `worker` (the server does once its port is bound, so that /health can say
    "loading" while the model loads); the app closes it on shutdown. `job` is what is served, `defaults` its
    settings resolved against `model`; `calibration` is the loaded file of `defaults.calibration`, which every
    request's options are checked against."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(worker.close)  # the running job stops within one decode

    app = FastAPI(title="rprm-lite", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Step-by-step verdicts on math solutions with R-PRM, served locally.")
    _add_error_handlers(app)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=serve_config.max_body_bytes,
                       read_timeout=serve_config.read_timeout)
    if serve_config.cors_origins:  # outside the Guard, so that browsers of listed origins can read its errors
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(serve_config.cors_origins),
                           allow_methods=["GET", "POST"], expose_headers=["X-Request-Id", "Retry-After"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-Id", "X-Cancel-Token"])
    app.add_middleware(Boundary, check_host=api_key is None, bound_host=serve_config.host,
                       cors_origins=serve_config.cors_origins)  # outermost: before anything answers
    _add_routes(app, worker, serve_config, job, defaults, model, calibration, keyed=api_key is not None)
    return app


def _add_routes(app: FastAPI, worker: EngineWorker, serve_config: ServeConfig, served: ScoreJob,
                defaults: ScoreConfig, model: ModelInfo, calibration: Calibration | None, *, keyed: bool) -> None:
    @app.get("/health", responses={503: {"description": "The model is still loading."}})
    def health() -> JSONResponse:
        """200 `{"status": "ok"}` once the model is loaded; 503 `{"status": "loading"}` before."""
        if worker.state == "ok":
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "loading" if worker.state == "loading" else worker.state}, status_code=503,
                            headers={"Retry-After": RETRY_AFTER_S})

    @app.get("/v1/info")
    def info() -> dict[str, Any]:
        """What `rprm-lite info` shows (build, model, metadata, resolved defaults), and the queue."""
        return info_dict(model, defaults, serve_config, worker.queue_state(), job=served)

    @app.post("/v1/prompt", response_class=PlainTextResponse, openapi_extra=_body_doc(bodies.PROMPT_BODY_SCHEMA),
              responses=_ERRORS)
    async def prompt(request: Request) -> PlainTextResponse:
        """The exact prompt text of one step (1-based `step`), as `rprm-lite prompt` prints it."""
        body = bodies.parse_json(await request.body())
        solution, step, style = bodies.prompt_request(body, defaults.prompt_style, max_steps=serve_config.max_steps)
        try:
            text = step_prompt(solution, step, style, option="step")
        except InputError as exc:
            raise ApiError(422, "invalid_input", str(exc)) from None
        return PlainTextResponse(text)

    @app.post("/v1/score", openapi_extra=_body_doc(bodies.SCORE_BODY_SCHEMA), responses={
        200: {"description": "The result, as one line of `rprm-lite score --json`; with `stream`, NDJSON events.",
              "content": {"application/json": {"schema": {"type": "object"}},
                          events.MEDIA_TYPE: {"schema": {"type": "string"}}}}, **_ERRORS})
    async def score(request: Request) -> Response:
        """Score one solution; the answer is what `rprm-lite score --json` prints for it."""
        parsed = bodies.score_request(bodies.parse_json(await request.body()), defaults, server=serve_config,
                                      calibration=calibration, show_critiques=served.show_critiques)
        request_id = _request_id(request)
        job = Job(parsed.solution, parsed.config, asyncio.get_running_loop(), request_id=request_id,
                  cancel_token=_header(request, "x-cancel-token", CANCEL_TOKEN, "16 to 128"),
                  time_limit_s=serve_config.request_timeout or None)
        _submit(worker, job)
        headers = {"X-Request-Id": request_id}
        if parsed.stream:
            # the background task also runs when the client left before the stream started
            return StreamingResponse(_stream(worker, job, parsed.show_critiques), media_type=events.MEDIA_TYPE,
                                     headers=headers, background=BackgroundTask(worker.cancel, job))
        result = await _wait_for_result(worker, job, request)
        return Response(output.to_json_line(result, critiques=parsed.show_critiques), media_type="application/json",
                        headers=headers)

    @app.post("/v1/score/{request_id}/cancel", responses=_ERRORS)
    def cancel(request_id: str, request: Request) -> dict[str, bool]:
        """Cancel a waiting or running score request by the X-Request-Id it was sent with (or answered
        with), sending the X-Cancel-Token it was sent with (on a server with an API key, the key is enough);
        it ends with a "cancelled" error. Closing the request's connection does the same."""
        token = request.headers.get("x-cancel-token")
        if not worker.cancel_by_id(request_id, token=token, trusted=keyed):
            raise ApiError(404, "not_found", f"no waiting or running request has the id {request_id[:128]!r} and "
                                             "that X-Cancel-Token (send the one the request was sent with)")
        return {"cancelled": True}


def _request_id(request: Request) -> str:
    return _header(request, "x-request-id", REQUEST_ID, "1 to 128") or uuid.uuid4().hex


def _header(request: Request, name: str, pattern: re.Pattern[str], length: str) -> str | None:
    given = request.headers.get(name)
    if given is not None and not pattern.fullmatch(given):
        label = "-".join(part.capitalize() for part in name.split("-"))
        raise ApiError(422, "invalid_input", f"{label} must be {length} letters, digits or . _ : -, "
                                             f"got {given[:40]!r}")
    return given


def _submit(worker: EngineWorker, job: Job) -> None:
    try:
        worker.submit(job)
    except DuplicateRequest as exc:
        raise ApiError(409, "duplicate_request_id", str(exc)) from None
    except QueueFull as exc:
        raise ApiError(503, "queue_full", str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None
    except NotReady as exc:
        raise ApiError(503, "not_ready", str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None


async def _wait_for_result(worker: EngineWorker, job: Job, request: Request) -> SolutionResult:
    """The job's result; a client that disconnects meanwhile cancels it."""
    get = asyncio.ensure_future(job.events.get())
    try:
        while True:
            done, _ = await asyncio.wait({get}, timeout=DISCONNECT_POLL_S)
            if not done:
                if await request.is_disconnected():
                    raise ApiError(503, "cancelled", "the client went away")
                continue
            kind, value = get.result()
            if kind == "result":
                result: SolutionResult = value
                return result
            if kind == "error":
                raise bodies.scoring_error(value)
            get = asyncio.ensure_future(job.events.get())
    finally:
        get.cancel()
        worker.cancel(job)  # does nothing to a finished job; stops one whose client is gone


async def _stream(worker: EngineWorker, job: Job, critiques: bool) -> AsyncIterator[bytes]:
    """NDJSON events as the job makes progress; when the client disconnects, Starlette cancels this
    generator and the `finally` cancels the job."""
    try:
        while True:
            kind, value = await job.events.get()
            if kind == "step":
                yield events.step_event(job.solution.id, value, critiques=critiques)
            elif kind == "result":
                yield events.result_event(value, critiques=critiques)
                return
            else:
                yield events.error_event(bodies.scoring_error(value).body())
                return
    finally:
        worker.cancel(job)


def info_dict(model: ModelInfo, defaults: ScoreConfig, serve_config: ServeConfig, queue: dict[str, Any], *,
              job: ScoreJob) -> dict[str, Any]:
    import llama_cpp

    from rprm_lite.model_file import plain_value

    return {
        "rprm_lite": __version__,
        "build": {"llama_cpp_python": llama_cpp.__version__,
                  "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                  "system": llama_cpp.llama_print_system_info().decode().strip()},
        "model": {"path": str(model.path), "architecture": model.architecture, "name": model.name,
                  "size_bytes": model.size, "tensors": model.n_tensors, "gguf_version": model.version,
                  "quantization": model.quantization, "context_length": model.context_length,
                  "sha256": model.sha256, "metadata": {k: plain_value(v) for k, v in sorted(model.rprm.items())},
                  "lora": [{**a.record(), "metadata": {k: plain_value(v) for k, v in sorted(a.rprm.items())}}
                           for a in model.adapters]},
        "settings": defaults.to_dict(),
        "request_options": list(bodies.REQUEST_OPTIONS),
        "server": {**{k: v for k, v in serve_config.to_dict().items() if k != "api_key_env"},
                   "show_critiques": job.show_critiques, "cache": None if job.cache is None else str(job.cache),
                   "prefix_cache": job.prefix_cache},
        "queue": queue,
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {"application/json": {"schema": bodies.ERROR_SCHEMA}}}
           for status, what in ((400, "Not JSON."), (401, "Missing or wrong API key."),
                                (403, "Host or Origin not allowed."), (404, "No such request."),
                                (408, "Body not sent in time."), (409, "That X-Request-Id is in use."),
                                (413, "Body, step count or prompt too large."), (415, "Body not application/json."),
                                (422, "Invalid solution or options, or above the server's limits."),
                                (503, "Queue full, loading, shutting down (see Retry-After), or over the time "
                                      "limit."))}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"type": kind, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(map(str, first.get("loc", ())))
        return JSONResponse({"error": {"type": "invalid_input", "message": f"{where}: {first['msg']}"}},
                            status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": {"type": "internal", "message": f"{type(exc).__name__}: {exc}"}},
                            status_code=500)
