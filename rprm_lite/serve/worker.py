"""One thread owns the `Scorer`; requests wait in a bounded queue and are scored one at a time.

llama.cpp's context is not safe to share between threads, and one solution's steps reuse each other's KV
cache, so the engine scores one solution at a time; every solution starts from an empty cache, so a
result never depends on what was scored before it (same seed, same result, alone or under load).
A job can be cancelled at any time: a waiting one leaves the queue at once, the running one stops within
one decode (`Scorer.score_solution`'s `should_stop`). Step results and the outcome of a job are handed to
the asyncio loop of the request that submitted it.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rprm_lite.config import ScoreConfig
from rprm_lite.errors import RprmError, ScoringCancelled
from rprm_lite.solution import Solution

log = logging.getLogger("rprm_lite.serve")


class QueueFull(RprmError):
    """More requests are waiting than --max-queue allows."""


class NotReady(RprmError):
    """The model is still loading, or the server is shutting down."""


class DuplicateRequest(RprmError):
    """A request id that a waiting or running job already has."""


class OverTime(RprmError):
    """A job that took longer than its time limit (--request-timeout) and was stopped."""


@dataclass(eq=False)
class Job:
    """One solution to score; its events are ("step", StepResult)..., then ("result", SolutionResult)
    or ("error", RprmError)."""

    solution: Solution
    config: ScoreConfig
    loop: asyncio.AbstractEventLoop
    request_id: str | None = None  # lets the client cancel it by id
    cancel_token: str | None = None  # ... when it also sends this secret (or the server's key)
    time_limit_s: float | None = None  # seconds of scoring, from when the engine takes it
    # (kind, value): ('step', StepResult), ('result', SolutionResult) or ('error', the exception)
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    why_cancelled: str = "the client went away"
    finished: bool = False

    def emit(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the request's loop is closed: nobody is listening any more
            pass


class EngineWorker:
    """Loads the model with `load` on its own thread, then scores submitted jobs in order."""

    def __init__(self, load: Callable[[], Any], *, max_queue: int,
                 on_load_failed: Callable[[BaseException], None] | None = None) -> None:
        self.max_queue = max_queue
        self.state = "loading"  # then "ok"; "failed" when the model could not be loaded; "closed"
        self._load = load
        self._on_load_failed = on_load_failed
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="rprm-engine", daemon=True)
        self.scored = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job`; raises NotReady or QueueFull instead when it cannot be taken."""
        with self._cond:
            if self._closing or self.state != "ok":
                raise NotReady("the server is shutting down" if self._closing else "the model is still loading")
            if job.request_id is not None and self._find(job.request_id) is not None:
                raise DuplicateRequest(f"request id {job.request_id!r} is already waiting or running; "
                                       "use a new id per request")
            if len(self._waiting) + (self._running is not None) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting (--max-queue {self.max_queue}); "
                                "retry later")
            self._waiting.append(job)
            self._cond.notify()

    def cancel_by_id(self, request_id: str, *, token: str | None, trusted: bool = False) -> bool:
        """Cancel the waiting or running job with this id, when `token` is the one it was sent with (or the
        caller is `trusted`: it holds the server's key); False when there is no such job."""
        with self._cond:
            job = self._find(request_id)
        if job is None or not (trusted or _same_secret(token, job.cancel_token)):
            return False
        self.cancel(job, "the client cancelled it")
        return True

    def _find(self, request_id: str) -> Job | None:
        jobs = [*self._waiting, *([self._running] if self._running else [])]
        return next((job for job in jobs if job.request_id == request_id and not job.cancelled.is_set()), None)

    def cancel(self, job: Job, why: str = "the client went away") -> None:
        """Stop `job` wherever it is; a finished job is left alone."""
        with self._cond:
            if job.finished or job.cancelled.is_set():
                return
            job.why_cancelled = why
            job.cancelled.set()
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, "error", ScoringCancelled(f"cancelled while waiting: {why}"))

    def queue_state(self) -> dict[str, Any]:
        with self._cond:
            return {"running": self._running is not None, "waiting": len(self._waiting),
                    "max_queue": self.max_queue, "scored": self.scored}

    def shutdown(self) -> None:
        """Take no more jobs and cancel every one, waiting or running; returns at once (a signal handler
        calls it)."""
        with self._cond:
            self._closing = True
            jobs = [*self._waiting, *([self._running] if self._running else [])]
            self._cond.notify_all()
        for job in jobs:
            self.cancel(job, "the server is shutting down")

    def close(self, timeout: float | None = None) -> None:
        """`shutdown()`, then wait for the engine thread, which frees the model."""
        self.shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the engine thread ---------------------------------------------------------------------
    def _run(self) -> None:
        started = time.perf_counter()
        try:
            scorer = self._load()
        except BaseException as exc:  # reported by the server, which then exits
            self.state = "failed"
            if self._on_load_failed is not None:
                self._on_load_failed(exc)
            return
        log.info("model %s loaded in %.1f s", scorer.model_info.path.name, time.perf_counter() - started)
        with self._cond:
            self.state = "ok" if not self._closing else "closed"
        try:
            while (job := self._next_job()) is not None:
                self._score(scorer, job)
        finally:
            scorer.close()
            self.state = "closed"
            log.info("model freed")

    def _next_job(self) -> Job | None:
        with self._cond:
            self._running = None
            while not self._waiting and not self._closing:
                self._cond.wait()
            if self._closing:
                return None  # close() cancels what was waiting
            self._running = self._waiting.popleft()
            return self._running

    def _score(self, scorer: Any, job: Job) -> None:
        started = time.perf_counter()
        try:
            scorer.use_config(job.config)
            result = scorer.score_solution(job.solution, on_step=lambda _, step: job.emit("step", step),
                                           should_stop=_stop_rule(job))
        except ScoringCancelled:
            error = _why_stopped(job)
            log.info("%s: stopped after %.3f s (%s)", job.solution.id, time.perf_counter() - started, error)
            self._finish(job, "error", error)
        except RprmError as exc:
            self._finish(job, "error", exc)
        except Exception as exc:  # a bug: the request gets a 500, the server keeps serving
            log.exception("%s: scoring failed", job.solution.id)
            self._finish(job, "error", RprmError(f"internal error while scoring: {type(exc).__name__}: {exc}"))
        else:
            self.scored += 1
            self._finish(job, "result", result)

    def _finish(self, job: Job, kind: str, value: Any) -> None:
        job.finished = True
        job.emit(kind, value)


def _stop_rule(job: Job) -> Callable[[], bool]:
    """The job stops when it is cancelled, or past its time limit counted from now."""
    if job.time_limit_s is None:
        return job.cancelled.is_set
    deadline = time.monotonic() + job.time_limit_s
    return lambda: job.cancelled.is_set() or time.monotonic() > deadline


def _why_stopped(job: Job) -> RprmError:
    if job.cancelled.is_set():
        return ScoringCancelled(f"cancelled: {job.why_cancelled}")
    return OverTime(f"scoring took more than this server's limit of {job.time_limit_s:g} s per request "
                    "(--request-timeout); ask for fewer critiques (k), tokens (max_tokens) or steps")


def _same_secret(given: str | None, expected: str | None) -> bool:
    """A job sent without a token cannot be cancelled by id (only by closing its connection)."""
    return given is not None and expected is not None and hmac.compare_digest(given.encode(), expected.encode())
