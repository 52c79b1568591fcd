"""`RemoteScorer`: the R-PRM recipe on OpenAI-compatible servers, a `Scorer` (`rprm_lite/scorer.py`, the seam it
shares with the local engine's `rprm_lite/scoring.py`) with the same results.

Prompts are rendered and tokenized here, with a vocabulary-only load of a GGUF file (special tokens are
parsed in the template only, never in the question or steps), and sent as token ids; a server that
takes only text (llama-cpp-python's) gets the text, and a solution whose question or steps hold
special-token text is refused before anything is sent. Steps of one solution go in order, with early
stop at the first wrong step (a step's verdict comes from its score as locally, `uncertain` inside the
uncertain band; adaptive K and calibration files are refused, not yet supported here); `score_many`
keeps several solutions in flight (`concurrency`), each on one server (round robin over the URLs, so a
solution's prompts meet that server's prefix cache). `score_candidates` scores candidate next steps of one
solution as `Scorer.score_candidates` does, each candidate's step alone, up to `concurrency` in flight.

A verdict whose top logprobs hold neither " Yes" nor " No" is not read (its p_yes is None), and a step
with such a verdict is "unread": it has no score (a mean over fewer than K critiques would be another
setting, recorded as K) and no verdict. By default that solution is a RemoteError (so the benchmarks,
rerank and the training data never take a made-up number); with `mark_unread` (the `score` command) the
step is marked "unread", the solution gets no score, and scoring goes on: `score` prints such a solution
but keeps it out of --output (a rerun scores it again) and exits 5 at the end.

A critique that ends without the verdict phrase gets the released fallback question, as locally. With
`verdict="released"` the verdict context is the prompt plus the cleaned critique text, tokenized as one
string (rprm_lite/verdict.py), exactly as the local engine's released pass does.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprm_lite import metadata
from rprm_lite import prompt as prompts
from rprm_lite.config import ScoreConfig
from rprm_lite.critique import Vocabulary
from rprm_lite.engine import Engine, stream_seed
from rprm_lite.errors import ContextOverflowError, InputError, ModelFileError, RprmError, ScoringCancelled
from rprm_lite.model_file import ModelInfo, file_sha256, inspect_model
from rprm_lite.remote import dialects
from rprm_lite.remote.dialects import CritiqueAsk, Dialect, Sampled, VerdictContext
from rprm_lite.remote.settings import RemoteConfig, refuse_unsupported
from rprm_lite.remote.transport import RemoteError, Retry, ServerClient
from rprm_lite.results import UNREAD, SolutionResult, StepResult
from rprm_lite.scorer import DEFAULT_POSITIONS, StepCallback, critique_budget, score_in_order, solution_result
from rprm_lite.solution import Solution
from rprm_lite.verdict import clean_critique, released_tokens, verdict_text
from rprm_lite.verdict_rule import step_verdict

if TYPE_CHECKING:
    from rprm_lite.drafts import DraftStats
    from rprm_lite.prefix_cache import PrefixCache

UNREAD_WHY = ("the server's top logprobs at the verdict held neither ' Yes' nor ' No' (is the served model the "
              "R-PRM model that --vocab tokenizes for?)")


@dataclass(frozen=True)
class RemoteStepResult(StepResult):
    """A step scored remotely: the local fields, plus the seeds sent and how many P(Yes) were approximate."""

    seeds: tuple[int, ...] = ()  # one per critique request: K, or one for a request with `n`
    # critiques whose P(Yes) is not exact: " Yes" or " No" missing from the top logprobs, or (a server that takes
    # text) the verdict context read back as other tokens than the ones scored locally
    approximate: int = 0
    unread: int = 0  # critiques whose top logprobs held neither: their p_yes is None, the step is "unread"


@dataclass
class Server:
    client: ServerClient
    dialect: Dialect
    model: str


class RemoteScorer:
    """Scores solutions on remote servers; `score_many` keeps up to `remote.concurrency` of them in flight.

    >>> remote = RemoteConfig(urls=("http://gpu1:8000",))
    >>> scorer = RemoteScorer("ggml-vocab-qwen2.gguf", remote=remote)  # doctest: +SKIP
    """

    # the local engine's prompt-prefix states and draft statistics: a server keeps its own, so there are none here
    prefix_cache: PrefixCache | None = None
    draft_stats: DraftStats | None = None

    def __init__(self, vocab_path: str | Path, config: ScoreConfig | None = None, *, remote: RemoteConfig,
                 mark_unread: bool = False, **overrides: Any) -> None:
        self.vocab_path = Path(vocab_path)
        self.mark_unread = mark_unread  # False: a step whose verdict cannot be read is a RemoteError
        self.model_info = _model_info(self.vocab_path)  # None for a vocabulary-only file
        base = config or (self.model_info.default_config() if self.model_info else ScoreConfig())
        self.config = base.replace(**overrides) if overrides else base
        refuse_unsupported(self.config.to_dict())  # before any server is asked anything
        self.remote = remote
        self.servers = [self._connect(url, kind) for url, kind in zip(remote.urls, remote.kinds, strict=True)]
        self.engine = Engine(self.vocab_path, vocab_only=True)
        try:
            self.vocab = self._find_vocabulary()
        except BaseException:
            self.engine.close()
            raise
        self._next_server = itertools.count()
        self._closed = False
        self._lock = threading.Lock()
        self._active = 0  # solutions being scored now (worker threads of score_many included)

    # -- public API --------------------------------------------------------------------------
    def score(self, question: str, steps: Sequence[str], *, id: str | None = None,
              on_step: StepCallback | None = None) -> SolutionResult:
        return self.score_solution(Solution.create(question, steps, id=id), on_step=on_step)

    def score_solution(self, solution: Solution, *, on_step: StepCallback | None = None) -> SolutionResult:
        return self._score(solution, self._pick_server(), on_step)

    def _pick_server(self) -> Server:
        if self._closed:
            raise RprmError("this RemoteScorer is closed; create a new one to score")
        return self.servers[next(self._next_server) % len(self.servers)]

    def score_many(self, solutions: Iterable[Solution], *,
                   on_step: StepCallback | None = None) -> Iterator[SolutionResult]:
        """Results in input order, with up to `remote.concurrency` solutions in flight; a failure raises at
        its solution's turn, after every earlier result has been yielded (so none of them is lost). The
        workers are daemon threads: Ctrl-C is not held up by requests in flight."""
        pending: collections.deque[tuple[threading.Thread, dict[str, Any]]] = collections.deque()
        for solution in solutions:
            pending.append(self._start(solution, on_step))
            if len(pending) >= self.remote.concurrency:
                yield _outcome(*pending.popleft())
        while pending:
            yield _outcome(*pending.popleft())

    def score_candidates(self, question: str, steps: Sequence[str], candidates: Sequence[str], *,
                         should_stop: Callable[[], bool] | None = None) -> list[StepResult | RprmError]:
        """Each candidate scored as the next step after `steps`, as `score_solution` of the question, `steps` and
        the candidate scores its last step with `all_steps` (the steps before it are not scored again), with up
        to `remote.concurrency` candidates in flight. A candidate that cannot be scored (an empty step, a prompt
        too long for the context, special-token text for a server that takes text) gets its error in its place.
        `should_stop` is asked before each candidate is sent (`ScoringCancelled`)."""
        done: dict[int, StepResult | RprmError] = {}
        pending: collections.deque[tuple[int, threading.Thread, dict[str, Any]]] = collections.deque()

        def collect() -> None:
            number, thread, box = pending.popleft()
            try:
                done[number] = _outcome(thread, box)
            except (ContextOverflowError, InputError) as exc:
                done[number] = exc

        for number, text in enumerate(candidates):
            if should_stop is not None and should_stop():
                raise ScoringCancelled("the call was cancelled by its caller")
            try:
                solution = Solution.create(question, [*steps, text], id=f"candidate-{number + 1}")
            except InputError as exc:
                done[number] = exc
                continue
            pending.append((number, *self._start(solution, None, last_only=True)))
            if len(pending) >= self.remote.concurrency:
                collect()
        while pending:
            collect()
        return [done[number] for number in range(len(candidates))]

    def _start(self, solution: Solution, on_step: StepCallback | None, *,
               last_only: bool = False) -> tuple[threading.Thread, dict[str, Any]]:
        box: dict[str, Any] = {}
        server = self._pick_server()  # here, in input order: the round robin does not depend on thread timing

        def work() -> None:
            try:
                box["result"] = (self._score_last(solution, server) if last_only
                                 else self._score(solution, server, on_step))
            except BaseException as exc:  # re-raised in the caller's thread, at this solution's turn
                box["error"] = exc

        thread = threading.Thread(target=work, name=f"rprm-remote-{solution.id}", daemon=True)
        thread.start()
        return thread, box

    def close(self) -> None:
        """Free the vocabulary. Solutions still in flight on worker threads stop at their next tokenization
        (raising RprmError); the last of them frees it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.engine.stop()
            free = self._active == 0
        if free:
            self.engine.close()

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise RprmError("this RemoteScorer is closed; create a new one to score")
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                free = self._closed and self._active == 0
            if free:
                self.engine.close()

    def __enter__(self) -> RemoteScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_metadata(self) -> dict[str, Any]:
        from rprm_lite.version import versions

        return {**self.run_settings(), **versions()}

    def run_settings(self) -> dict[str, Any]:
        """The local engine's settings block, plus which servers, model and P(Yes) method gave the results."""
        methods = sorted({server.dialect.p_yes_method for server in self.servers})
        return {**self.config.to_dict(), "model": self.servers[0].model, "model_sha256": None,
                "prompt_sha256": prompts.template_hash(self.config.prompt_style),
                "backend": "remote", "server": [server.client.url for server in self.servers],
                "server_kind": [server.dialect.name for server in self.servers],
                "server_model": self.servers[0].model, "p_yes_method": "; ".join(methods),
                "vocab": self.vocab_path.name, "vocab_sha256": self._vocab_sha256()}

    # -- one solution ------------------------------------------------------------------------
    def _score(self, solution: Solution, server: Server, on_step: StepCallback | None) -> SolutionResult:
        with self._in_use():
            return self._score_steps(solution, server, on_step)

    def _score_last(self, solution: Solution, server: Server) -> StepResult:
        """The solution's last step, as `_score_steps` with `all_steps` scores it (the same critique budget)."""
        with self._in_use():
            if not server.dialect.token_ids:
                _refuse_special_text(solution, server)
            last = len(solution.steps) - 1
            prompt = prompts.render(solution, last, self.config.prompt_style)
            tokens = [self.engine.tokenize_prompt(prompts.render(solution, i, self.config.prompt_style))
                      for i in range(last)]
            prompt_ids = self.engine.tokenize_prompt(prompt)
            max_tokens = self._critique_budget(max(len(t) for t in [*tokens, prompt_ids]))
            step = self._score_step(server, last, prompt, prompt_ids, max_tokens)
        if step.verdict == UNREAD and not self.mark_unread:
            raise RemoteError(f"{server.client.url}: solution {solution.id}, step {step.index}: {UNREAD_WHY}")
        return step

    def _score_steps(self, solution: Solution, server: Server, on_step: StepCallback | None) -> SolutionResult:
        if not server.dialect.token_ids:
            _refuse_special_text(solution, server)
        rendered = [prompts.render(solution, i, self.config.prompt_style) for i in range(len(solution.steps))]
        tokens = [self.engine.tokenize_prompt(p) for p in rendered]
        max_tokens = self._critique_budget(max(len(t) for t in tokens))
        results = score_in_order(
            solution, prompt_tokens=tokens.__getitem__,
            score_step=lambda index, prompt_ids: self._score_step(server, index, rendered[index], prompt_ids,
                                                                  max_tokens),
            all_steps=self.config.all_steps, on_step=on_step)
        result = solution_result(solution, results, aggregation=self.config.aggregation,
                                 config={**self.run_metadata(), "effective_max_tokens": max_tokens})
        unread = [str(step.index) for step in results if step.verdict == UNREAD]
        if unread and not self.mark_unread:
            raise RemoteError(f"{server.client.url}: solution {solution.id}, step(s) {', '.join(unread)}: "
                              f"{UNREAD_WHY}")
        if unread:  # an aggregate without one of the steps is no score
            return dataclasses.replace(result, solution_score=None)
        return result

    def _score_step(self, server: Server, index: int, prompt: prompts.Prompt, prompt_ids: list[int],
                    max_tokens: int) -> RemoteStepResult:
        cfg = self.config
        seeds = tuple(stream_seed(cfg.seed, index, i) for i in range(cfg.k))
        ask = CritiqueAsk(prompt_ids=tuple(prompt_ids), prompt_text=prompt.text, seeds=seeds,
                          temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=max_tokens, model=server.model)
        sampled = self._critiques(server, ask)
        finished = [self._finish(critique) for critique in sampled]
        contexts = [self._verdict_context(prompt, prompt_ids, text, ids, fallback)
                    for text, ids, fallback, _ in finished]
        verdicts = self._verdicts(server, prompt_ids, contexts)
        p_yes = tuple(v.p_yes for v in verdicts)
        unread = p_yes.count(None)
        score = None if unread else sum(p for p in p_yes if p is not None) / len(p_yes)
        moved = [False] * len(contexts) if server.dialect.token_ids else [self._retokenized(c) for c in contexts]
        return RemoteStepResult(
            index=index + 1, score=score, p_yes=p_yes, unread=unread,
            verdict=UNREAD if score is None else step_verdict(score, cfg.threshold, cfg.uncertain_band),
            fallbacks=sum(f[2] for f in finished), generated_tokens=sum(f[3] for f in finished),
            critiques=tuple(text + (prompts.FALLBACK_TEXT if fallback else "") + verdict.shown
                            for (text, _, fallback, _), verdict in zip(finished, verdicts, strict=True)),
            prompt_tokens=len(prompt_ids), reused_tokens=0, seeds=server.dialect.sent_seeds(ask),
            approximate=sum(v.approximate or shifted for v, shifted in zip(verdicts, moved, strict=True)))

    def _critiques(self, server: Server, ask: CritiqueAsk) -> list[Sampled]:
        requests = server.dialect.critique_requests(ask)
        per_request = len(ask.seeds) // len(requests)
        answers = _parallel(server.client, requests)
        sampled = _parsed(server, requests, answers, lambda answer: server.dialect.parse_critiques(answer, per_request))
        if len(sampled) != len(ask.seeds):
            raise RemoteError(f"{server.client.url}: asked for {len(ask.seeds)} critiques, got {len(sampled)}")
        return sampled

    def _finish(self, critique: Sampled) -> tuple[str, list[int], bool, int]:
        """(critique text through the verdict phrase, its token ids, fallback?, generated tokens)."""
        text = critique.text
        cut = text.find(prompts.VERDICT_PHRASE)
        if cut >= 0:
            text = text[:cut + len(prompts.VERDICT_PHRASE)]
        elif critique.stopped_on_phrase:
            text += prompts.VERDICT_PHRASE  # the server trimmed its stop string
        has_phrase = cut >= 0 or critique.stopped_on_phrase
        ids, ended = list(critique.token_ids or ()), 0
        while ids and self.engine.is_end(ids[-1]):  # the end token a server stopped on (llama-server lists it);
            ids.pop()  # the local engine never decodes it, so the fallback question follows the text
            ended += 1
        if not ids or b"".join(self.engine.piece(t) for t in ids).decode("utf-8", errors="replace") != text:
            ids = self.engine.tokenize(text, special=False)  # the server's own ids are unknown or cover more
        generated = critique.tokens - ended if critique.tokens is not None and cut < 0 else len(ids)
        return text, ids, not has_phrase, generated

    def _verdict_context(self, prompt: prompts.Prompt, prompt_ids: list[int], text: str, ids: list[int],
                         fallback: bool) -> VerdictContext:
        if self.config.verdict == "released":
            released = verdict_text(clean_critique(text))
            return VerdictContext(tuple(released_tokens(self.engine, prompt, released)), prompt.text + released)
        tail = list(self.vocab.fallback) if fallback else []
        return VerdictContext(tuple(prompt_ids + ids + tail),
                              prompt.text + text + (prompts.FALLBACK_TEXT if fallback else ""))

    def _retokenized(self, context: VerdictContext) -> bool:
        """Whether a server that takes text (llama-cpp-python's: special tokens parsed, no BOS added) reads
        `context.text` as other tokens than `context.ids`, the ones the local engine scores: BPE merges across
        the seams of prompt, critique and fallback question. Its P(Yes) is then of another context, and no
        bound holds; with the same tokens it is the local P(Yes) (1e-3, tests/test_remote.py)."""
        exact = list(context.ids[1:] if self.engine.add_bos and context.ids[:1] == (self.engine.bos,) else context.ids)
        return self.engine.tokenize(context.text, special=True) != exact

    def _verdicts(self, server: Server, prompt_ids: list[int],
                  contexts: list[VerdictContext]) -> list[dialects.Verdict]:
        requests = server.dialect.verdict_requests(prompt_ids, contexts, model=server.model,
                                                   yes=self.vocab.yes, no=self.vocab.no)
        per_request = len(contexts) // len(requests)
        answers = _parallel(server.client, requests)
        verdicts = _parsed(server, requests, answers, lambda answer: server.dialect.parse_verdicts(
            answer, per_request, yes=self.vocab.yes, no=self.vocab.no))
        if len(verdicts) != len(contexts):
            raise RemoteError(f"{server.client.url}: asked for {len(contexts)} verdicts, got {len(verdicts)}")
        return verdicts

    # -- set-up ------------------------------------------------------------------------------
    def _connect(self, url: str, kind: str) -> Server:
        remote = self.remote
        client = ServerClient(url, api_key_env=remote.api_key_env,
                              retry=Retry(tries=remote.tries, backoff=remote.backoff, timeout=remote.timeout))
        model = remote.server_model
        if kind == "auto" or model is None:
            detected, listed = dialects.detect(client.get("/v1/models"))
            kind = detected if kind == "auto" else kind
            model = model or listed
        if model is None:
            raise RemoteError(f"{url}/v1/models lists no model; pass --server-model NAME")
        return Server(client, dialects.DIALECTS[kind](remote.top_logprobs), model)

    def _critique_budget(self, longest: int) -> int:
        # as the local engine sizes critiques; a server's own context cap is the server's (no --n-ctx here)
        return critique_budget(self.config, longest, positions=self.context_positions,
                               reserve=self.vocab.reserve, n_ctx=None, advice="shorten the solution")

    @property
    def context_positions(self) -> int:
        """The model's context length as its GGUF says (a vocabulary-only load reads none: the default)."""
        return self.engine.n_ctx_train or (self.model_info.context_length if self.model_info else None) \
            or DEFAULT_POSITIONS

    def _find_vocabulary(self) -> Vocabulary:
        found: list[int] = []
        info = self.model_info
        for text, from_metadata in ((metadata.YES_TEXT, info.yes_token_id if info is not None else None),
                                    (metadata.NO_TEXT, info.no_token_id if info is not None else None)):
            tokens = [from_metadata] if from_metadata is not None else self.engine.tokenize(text, special=False)
            if len(tokens) != 1 or self.engine.piece(tokens[0]) != text.encode():
                raise ModelFileError(f"{self.vocab_path.name}: the vocabulary has no single token for {text!r}; "
                                     "R-PRM reads P(Yes) from one token each")
            found.append(tokens[0])
        return Vocabulary(yes=found[0], no=found[1],
                          fallback=tuple(self.engine.tokenize(prompts.FALLBACK_TEXT, special=False)))

    def _vocab_sha256(self) -> str:
        if not hasattr(self, "_sha256"):
            self._sha256 = self.model_info.sha256 if self.model_info else file_sha256(self.vocab_path)
        return self._sha256


def _model_info(path: Path) -> ModelInfo | None:
    """The model file's pre-flight, or None for a vocabulary-only GGUF (no tensors: nothing more to check)."""
    try:
        return inspect_model(path)
    except ModelFileError as exc:
        if "vocabulary-only" in str(exc) and "no tensors" in str(exc):
            return None
        raise


def _refuse_special_text(solution: Solution, server: Server) -> None:
    for where, text in (("question", solution.question),
                        *((f"step {i + 1}", step) for i, step in enumerate(solution.steps))):
        found = prompts.SPECIAL_MARKER.search(text)
        if found:
            raise InputError(f"solution {solution.id}: its {where} holds the special-token text {found.group()!r}, "
                             f"and {server.client.url} ({server.dialect.name}) takes prompts only as text, which "
                             "it parses for special tokens; not sent. Use a server that takes token ids "
                             "(vLLM, SGLang, llama-server)")


def _parsed(server: Server, requests: list[dialects.Request], answers: list[dict[str, Any]],
            parse: Callable[[dict[str, Any]], list[Any]]) -> list[Any]:
    """Every answer parsed in order; a malformed one is a RemoteError naming the server and the path."""
    parsed = []
    for (path, _), answer in zip(requests, answers, strict=True):
        try:
            parsed += parse(answer)
        except RemoteError as exc:
            raise RemoteError(f"{server.client.url}{path}: {exc}") from None
    return parsed


def _outcome(thread: threading.Thread, box: dict[str, Any]) -> Any:
    """A worker's result (a `SolutionResult`, or a `StepResult` for a candidate), or its error raised here."""
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _parallel(client: ServerClient, requests: list[dialects.Request]) -> list[dict[str, Any]]:
    """POST every request, at once when there are several (the K requests of a server without `n`)."""
    if len(requests) == 1:
        return [client.post(*requests[0])]
    results: list[Any] = [None] * len(requests)
    errors: list[BaseException] = []

    def send(i: int, request: dialects.Request) -> None:
        try:
            results[i] = client.post(*request)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i, r), daemon=True) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
