"""The FastAPI app of `rprm-lite serve`: health, info, prompt and score, over one `EngineWorker`.

Request bodies are read as raw bytes (by the `Guard` middleware, at most `max_body_bytes`) and validated
by `bodies`, through the same code as the CLI, so that a bad request gets the CLI's own message; the
OpenAPI schema documents the bodies for clients. Every answer other than 200 is `{"error": {"type",
"message"}}`; /health answers `{"status": ...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from rprm_lite import output
from rprm_lite.calibration import Calibration
from rprm_lite.commands import step_prompt
from rprm_lite.config import ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.model_file import ModelInfo
from rprm_lite.serve import bodies, events
from rprm_lite.serve.bodies import ApiError
from rprm_lite.serve.settings import ServeConfig
from rprm_lite.serve.worker import DuplicateRequest, EngineWorker, Job, NotReady, QueueFull
from rprm_lite.version import __version__

log = logging.getLogger("rprm_lite.serve")
RETRY_AFTER_S = "1"
DISCONNECT_POLL_S = 0.05  # how often a waiting non-streaming request checks that its client is still there
OPEN_PATHS = ("/health",)  # answered without the API key: a supervisor polls it
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # the client's X-Request-Id, to cancel a request by it


def create_app(worker: EngineWorker, *, serve_config: ServeConfig, defaults: ScoreConfig, model: ModelInfo,
               api_key: str | None = None, calibration: Calibration | None = None) -> FastAPI:
    """The caller starts `worker` (the server does once its port is bound, so that /health can say
    "loading" while the model loads); the app closes it on shutdown. `calibration` is the loaded file of
    `defaults.calibration`, which every request's options are checked against."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await asyncio.to_thread(worker.close)  # the running job stops within one decode

    app = FastAPI(title="rprm-lite", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Step-by-step verdicts on math solutions with R-PRM, served locally.")
    _add_error_handlers(app)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=serve_config.max_body_bytes)
    if serve_config.cors_origins:  # outermost, so that browsers can read the errors too
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(serve_config.cors_origins),
                           allow_methods=["GET", "POST"], expose_headers=["X-Request-Id", "Retry-After"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-Id"])
    _add_routes(app, worker, serve_config, defaults, model, calibration)
    return app


def _add_routes(app: FastAPI, worker: EngineWorker, serve_config: ServeConfig, defaults: ScoreConfig,
                model: ModelInfo, calibration: Calibration | None) -> None:
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
        return info_dict(model, defaults, serve_config, worker.queue_state())

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
        parsed = bodies.score_request(bodies.parse_json(await request.body()), defaults,
                                      max_steps=serve_config.max_steps, show_critiques=serve_config.show_critiques,
                                      calibration=calibration)
        job = Job(parsed.solution, parsed.config, asyncio.get_running_loop(), request_id=_request_id(request))
        _submit(worker, job)
        headers = {"X-Request-Id": job.request_id}
        if parsed.stream:
            # the background task also runs when the client left before the stream started
            return StreamingResponse(_stream(worker, job, parsed.show_critiques), media_type=events.MEDIA_TYPE,
                                     headers=headers, background=BackgroundTask(worker.cancel, job))
        result = await _wait_for_result(worker, job, request)
        return Response(output.to_json_line(result, critiques=parsed.show_critiques), media_type="application/json",
                        headers=headers)

    @app.post("/v1/score/{request_id}/cancel", responses=_ERRORS)
    def cancel(request_id: str) -> dict[str, bool]:
        """Cancel a waiting or running score request by the X-Request-Id it was sent with (or answered
        with); it ends with a "cancelled" error. Closing the request's connection does the same."""
        if not worker.cancel_by_id(request_id):
            raise ApiError(404, "not_found", f"no waiting or running request has the id {request_id!r}")
        return {"cancelled": True}


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex
    if not REQUEST_ID.fullmatch(given):
        raise ApiError(422, "invalid_input", "X-Request-Id must be 1 to 128 letters, digits or . _ : -, "
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


async def _wait_for_result(worker: EngineWorker, job: Job, request: Request):
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
                return value
            if kind == "error":
                raise bodies.scoring_error(value)
            get = asyncio.ensure_future(job.events.get())
    finally:
        get.cancel()
        worker.cancel(job)  # does nothing to a finished job; stops one whose client is gone


async def _stream(worker: EngineWorker, job: Job, critiques: bool):
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


def info_dict(model: ModelInfo, defaults: ScoreConfig, serve_config: ServeConfig, queue: dict) -> dict[str, Any]:
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
        "server": {k: v for k, v in serve_config.to_dict().items() if k != "api_key_env"},
        "queue": queue,
    }


_ERRORS = {status: {"description": what, "content": {"application/json": {"schema": bodies.ERROR_SCHEMA}}}
           for status, what in ((400, "Not JSON."), (401, "Missing or wrong API key."), (404, "No such request."),
                                (409, "That X-Request-Id is in use."),
                                (413, "Body, step count or prompt too large."), (422, "Invalid solution or options."),
                                (503, "Queue full, loading or shutting down (see Retry-After)."))}


def _body_doc(schema: dict) -> dict:
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


class Guard:
    """Pure ASGI middleware (so streaming and disconnects pass through untouched): the API key, then the
    body limit. The body is read here, at most `max_body_bytes`, and replayed to the app."""

    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.api_key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            return await _send_error(scope, send, ApiError(401, "unauthorized", "missing or wrong API key; send "
                                                    "'Authorization: Bearer <key>'",
                                                    headers={"WWW-Authenticate": "Bearer"}))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _send_error(scope, send, self._too_large(int(declared)))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return await _send_error(scope, send, self._too_large(size, at_least=True))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, scope: dict) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key.encode())

    def _too_large(self, size: int, *, at_least: bool = False) -> ApiError:
        return ApiError(413, "body_too_large", f"request body: {'more than ' if at_least else ''}{size:,} bytes; "
                                               f"this server takes at most {self.max_body_bytes:,} (--max-body-bytes)")


async def _send_error(scope: dict, send: Any, error: ApiError) -> None:
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    await response(scope, _no_receive, send)


async def _no_receive() -> dict:
    return {"type": "http.disconnect"}
