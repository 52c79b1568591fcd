"""Teachers that write critiques for seed data: an OpenAI-compatible chat endpoint, or a local GGUF.

A teacher takes tasks (a labelled step and a sample number) and yields (task, critique text) as
each finishes, in any order, so the caller can write results while the rest are still running.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from rprm_lite.errors import InputError
from rprm_lite.prompt import render_text
from rprm_lite.seeds import json_seed
from rprm_lite.solution import Solution
from rprm_lite.training.errors import TeacherError
from rprm_lite.training.labels import LabelledStep, by_solution

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class Task:
    step: LabelledStep
    sample: int  # 0-based number of this critique among the ones asked for the step

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.step.solution.id, self.step.number, self.sample)


class Teacher(Protocol):
    name: str

    def critiques(self, tasks: list[Task]) -> Iterator[tuple[Task, str]]: ...


def chat_messages(solution: Solution, index: int) -> list[dict[str, str]]:
    """The R-PRM prompt as chat messages: the system and user turns of the ChatML template."""
    text = render_text(solution, index, "chatml")
    system = text.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0]
    # the template's own end-of-user marker is the last one; an "<|im_end|>" inside a step comes before it
    user = text.split("<|im_start|>user\n", 1)[1].rsplit("<|im_end|>", 1)[0]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def task_seed(seed: int, task: Task) -> int:
    return json_seed(seed, *task.key)


@dataclass
class ChatTeacher:
    """An OpenAI-compatible `/chat/completions` endpoint (vLLM, llama.cpp server, a hosted API)."""

    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 4096
    seed: int = 0
    concurrency: int = 8
    max_retries: int = 5
    retry_delay: float = 1.0
    timeout: float = 300.0

    @property
    def name(self) -> str:
        return f"{self.model}@{self.base_url}"

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def critiques(self, tasks: list[Task]) -> Iterator[tuple[Task, str]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending: dict[Future[str], Task] = {}
            queue = iter(tasks)
            try:
                _fill(pool, pending, queue, self.request, self.concurrency)
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = pending.pop(future)
                        yield task, future.result()
                    _fill(pool, pending, queue, self.request, self.concurrency)
            finally:
                for future in pending:
                    future.cancel()

    def request(self, task: Task) -> str:
        body = json.dumps({
            "model": self.model,
            "messages": chat_messages(task.step.solution, task.step.index),
            "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
            "seed": task_seed(self.seed, task),
        }).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.retry_delay * 2 ** (attempt - 1), MAX_BACKOFF_S))
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _message_text(response.read(), self.url)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", errors="replace")
                if exc.code not in RETRY_STATUS:
                    raise TeacherError(f"teacher at {self.url} answered HTTP {exc.code}: {detail}; "
                                       "check --teacher-model and --api-key-env") from None
                last_error = f"HTTP {exc.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last_error = str(getattr(exc, "reason", exc))
        raise TeacherError(f"teacher at {self.url} failed {self.max_retries + 1} times; last error: {last_error}")


def _fill(pool: ThreadPoolExecutor, pending: dict, queue: Iterator[Task], fn: Any, limit: int) -> None:
    # keep at most `limit` requests queued, so a failure stops the run without a backlog of sent work
    while len(pending) < limit:
        task = next(queue, None)
        if task is None:
            return
        pending[pool.submit(fn, task)] = task


def _message_text(raw: bytes, url: str) -> str:
    try:
        reply = json.loads(raw)
        content = reply["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise TeacherError(f"teacher at {url} sent an answer that is not a chat completion: "
                           f"{raw[:200].decode('utf-8', errors='replace')!r}") from None
    return content or ""


class GGUFTeacher:
    """A local GGUF model through the rprm-lite runtime: K critiques per step, sampled in parallel."""

    def __init__(self, model_path: str, *, samples: int, temperature: float, top_p: float,
                 max_tokens: int, seed: int, prompt_style: str, n_gpu_layers: int = 0) -> None:
        from rprm_lite.training.gguf_critiques import GGUFCritiques

        self.sampler = GGUFCritiques(model_path, k=samples, temperature=temperature, top_p=top_p,
                                     max_tokens=max_tokens, seed=seed, prompt_style=prompt_style,
                                     n_gpu_layers=n_gpu_layers)
        self.name = self.sampler.name

    def critiques(self, tasks: list[Task]) -> Iterator[tuple[Task, str]]:
        for solution_tasks in by_solution(tasks, lambda task: task.step):
            steps = self.sampler.steps(solution_tasks[0].step.solution,
                                       sorted({task.step.index for task in solution_tasks}))
            for task in solution_tasks:
                yield task, steps[task.step.index].critiques[task.sample]

    def close(self) -> None:
        self.sampler.close()


def make_teacher(spec: str, *, model: str, api_key_env: str, samples: int, temperature: float,
                 top_p: float, max_tokens: int, seed: int, concurrency: int, max_retries: int,
                 retry_delay: float, timeout: float, prompt_style: str, n_gpu_layers: int) -> Teacher:
    """A chat teacher for an http(s) URL, else a GGUF teacher for a model file."""
    if spec.startswith(("http://", "https://")):
        if not model:
            raise InputError("--teacher is an endpoint URL, so --teacher-model must name the model to ask for")
        return ChatTeacher(spec, model, _api_key(api_key_env), temperature, top_p, max_tokens, seed,
                           concurrency, max_retries, retry_delay, timeout)
    return GGUFTeacher(spec, samples=samples, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                       seed=seed, prompt_style=prompt_style, n_gpu_layers=n_gpu_layers)


def _api_key(env_name: str) -> str | None:
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise InputError(f"--api-key-env names {env_name}, but that environment variable is not set; "
                         f"export {env_name}=... or leave the option out for endpoints without a key")
    return key
