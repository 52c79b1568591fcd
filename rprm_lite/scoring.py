"""`Scorer`: load a model once, then score solutions step by step, with llama.cpp in this process.

It implements the scorer seam (`rprm_lite/scorer.py`: the protocol and the recipe both backends follow),
beside the remote backend (`rprm_lite/remote/`).

Steps are scored in order. The prompt of step k+1 shares a long prefix with the prompt of step k,
so only the new suffix is decoded (KV reuse). Scoring stops at the first step whose score is
below the threshold unless `all_steps` is set. Calls are serialized by a lock, so one `Scorer`
can be shared by the threads of a desktop app; `close()` stops a call in flight, waits for it and
frees the model, after which every call raises `RprmError`. A call from inside the `on_step`
callback of a call in flight would deadlock on that lock, so it raises `RprmError` instead.
With `verdict="released"`, each critique's P(Yes) is read again as the released evaluation reads it
(a second pass over the cleaned critique text, `rprm_lite/verdict.py`).
The template's text before the question, and the question, are decoded once per model and question, not
once per solution: their KV state is kept and put back (`rprm_lite/prefix_cache.py`), with the same results.
Results of recent steps are reused when nothing that decides them changed (`rprm_lite/step_cache.py`);
the verdict of each step is decided from its score by `rprm_lite/verdict_rule.py`, after the calibration
file's map when one is set (`rprm_lite/calibration.py`).
`score_candidates` scores N candidate next steps of one solution together (a guided search's step): the prompt
they share is decoded once and their N x K critiques run as one lock-step batch (`critique.sample_batch`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rprm_lite import metadata
from rprm_lite import prompt as prompts
from rprm_lite.adapter_file import LoraArg, load_model_info, with_adapters
from rprm_lite.calculator import Sources
from rprm_lite.calibration import Calibration
from rprm_lite.config import ScoreConfig
from rprm_lite.critique import PROMPT_SEQ, BatchPrompt, Vocabulary, sample_batch, sample_critiques, sample_in_waves
from rprm_lite.drafts import DraftStats
from rprm_lite.engine import MAX_SEQUENCES, DecodeEntry, Engine, Sampler, common_prefix
from rprm_lite.errors import ContextOverflowError, InputError, ModelFileError, RprmError, ScoringCancelled
from rprm_lite.model_file import ModelInfo
from rprm_lite.prefix_cache import Mode, PrefixCache, make_prefix_cache, state_key
from rprm_lite.results import SolutionResult, StepResult
from rprm_lite.scorer import (
    DEFAULT_POSITIONS,
    StepCallback,
    critique_budget,
    resolve_settings,
    run_settings,
    score_in_order,
    solution_result,
)
from rprm_lite.solution import Solution
from rprm_lite.step_cache import StepCache, step_key
from rprm_lite.verdict import released_p_yes
from rprm_lite.verdict_rule import step_verdict
from rprm_lite.version import versions

if TYPE_CHECKING:
    from rprm_lite.critique import CritiqueResult

# KV cells a batch of candidates may take (unless one candidate alone needs more); more candidates than fit are
# scored in several batches. About 0.75 GB of KV cache for the demo judge, 1.8 GB for a 7B Qwen2.
BATCH_CELLS = 32768
# settings that only decide a verdict from a score, or that are replaced by what the engine really uses
NOT_IN_STEP_KEY = ("threshold", "uncertain_band", "calibration", "aggregation", "all_steps", "threads")


class Scorer:
    """Scores solutions with a generative PRM in GGUF form.

    >>> scorer = Scorer("r-prm-7b.Q4_K_M.gguf", config=ScoreConfig(k=10))   # doctest: +SKIP
    >>> scorer.score("What is 2+3?", ["2+3 = 5.", "The answer is 5."]).first_error_step  # doctest: +SKIP
    """

    def __init__(self, model_path: str | Path | ModelInfo | None = None, config: ScoreConfig | None = None,
                 *, cache: str | Path | StepCache | None = None,
                 settings: tuple[ScoreConfig, Calibration | None] | None = None,
                 lora: LoraArg | Sequence[LoraArg] | None = None, prefix_cache: Mode | bool | PrefixCache = "auto",
                 **overrides: Any) -> None:
        """`model_path` may also be a `ModelInfo` already checked by `inspect_model` (and `with_adapters`).
        `lora`: LoRA adapter GGUFs applied on top, each a path, "PATH:SCALE" or (path, scale); they are
        checked against the model before it loads, and their rprm.* metadata overrides the model's.
        `config` defaults to the model file's (and adapters') rprm.* settings, else `ScoreConfig()`;
        `overrides` (field names) go on top.
        `cache`: a folder that keeps step results across runs, or a `StepCache` (default: in memory); the
        prompt prefixes' KV states are kept in its `kv` subfolder too.
        `prefix_cache`: "auto" (True) keeps the prompt prefixes' KV states in memory and on disk, in the `cache`
        folder, else in the per-user cache folder ($RPRM_CACHE_DIR); "memory" in memory only; "off" (False)
        decodes every prompt from its first token (the same results, slower); a `PrefixCache` is used as it is.
        `settings`: what `resolve_settings` returned for this model, taken as it is (instead of `config`
        and `overrides`: the calibration file is not read again)."""
        self.model_info: ModelInfo = (with_adapters(model_path, lora) if isinstance(model_path, ModelInfo)
                                      else load_model_info(model_path, lora))
        if settings is not None and (config is not None or overrides):
            raise TypeError("settings= (from resolve_settings) replaces config= and the overrides")
        self.config, self.calibration = settings or resolve_settings(self.model_info, config, overrides)
        self.step_cache = cache if isinstance(cache, StepCache) else StepCache(cache)
        self.prefix_cache = make_prefix_cache(prefix_cache, self.step_cache.directory)
        self.engine = Engine(self.model_info.path, n_gpu_layers=self.config.n_gpu_layers,
                             threads=self.config.threads,
                             loras=[(adapter.path, adapter.scale) for adapter in self.model_info.adapters])
        try:
            self.vocab = self._find_vocabulary()
            self._check_template_markers()
        except BaseException:
            self.engine.close()
            raise
        self.make_sampler = Sampler  # a seam for tests that script a critique
        self.draft_stats = DraftStats()  # what the drafts did (--draft), over this scorer's life
        self._lock = threading.Lock()
        self._scoring_thread: int | None = None  # the thread inside `_score`, to refuse re-entry
        self._closed = False
        self._cached: list[int] = []  # tokens of the prompt now held in sequence 0
        self._not_loaded: list[list[int]] = []  # prompts of cache hits not yet decoded (see _cached_or_scored_step)
        self._key_base: dict[str, Any] | None = None
        self._question_tokens: list[int] = []  # the solution's tokens up to its question's end (see _marks)
        self._head_tokens: dict[str, list[int]] = {}  # per prompt style, its tokens before the question
        self._prefix_base: dict[str, Any] | None = None

    def score(self, question: str, steps: Sequence[str], *, id: str | None = None,
              on_step: StepCallback | None = None) -> SolutionResult:
        """Score one solution given as its question and steps; `on_step(solution, step)` is called as each
        step is scored. The same as `score_solution(Solution.create(question, steps, id=id))`."""
        return self.score_solution(Solution.create(question, steps, id=id), on_step=on_step)

    def score_solution(self, solution: Solution, *, on_step: StepCallback | None = None,
                       should_stop: Callable[[], bool] | None = None) -> SolutionResult:
        """`should_stop` (e.g. `event.is_set`) is asked before each decode; once it returns True the call
        raises `ScoringCancelled` within one decode, and the Scorer stays usable with an empty cache."""
        self._refuse_reentry("score")
        with self._scoring(should_stop):
            return self._score(solution, on_step)

    def score_candidates(self, question: str, steps: Sequence[str], candidates: Sequence[str], *,
                         should_stop: Callable[[], bool] | None = None) -> list[StepResult | RprmError]:
        """Score each of `candidates` as the next step after `steps` (which may be empty): in its place, the result
        `score_solution` of the question, `steps` and that candidate gives its last step with `all_steps` (the steps
        before it are not scored). The candidates are scored together: their prompts share the question and the
        steps so far, so that prefix is decoded once, each candidate's own tokens once, and their N x K critiques
        run as one lock-step batch (several when they do not fit 255 sequences or the batch's KV cells,
        `BATCH_CELLS` or `n_ctx`). Critiques are those each candidate gets alone; P(Yes) differs from a lone
        scoring by float rounding only (a larger batch sums in another order). A candidate that cannot be scored
        (an empty step, a prompt too long for the context) gets its error (`InputError`, `ContextOverflowError`)
        in its place, and the others are scored. With adaptive K or the released verdict the candidates are
        scored one after another, as `score_solution` does. `should_stop` as in `score_solution`."""
        self._refuse_reentry("score_candidates")
        with self._scoring(should_stop):
            return self._score_candidates(question, list(steps), list(candidates))

    @contextlib.contextmanager
    def _scoring(self, should_stop: Callable[[], bool] | None) -> Iterator[None]:
        """Hold the scorer for one call: refused once closed; cancelled by `should_stop` (the cache emptied)."""
        with self._lock:
            if self._closed:
                raise RprmError(f"this Scorer of {self.model_info.path.name} is closed; create a new one to score")
            self._scoring_thread = threading.get_ident()
            self.engine.should_stop = should_stop
            try:
                yield
            except ScoringCancelled:
                self._cached = []  # the critiques in flight are dropped with the rest of the cache
                self.engine.clear()
                raise
            finally:
                self.engine.should_stop = None
                self._scoring_thread = None

    def score_many(self, solutions: Iterable[Solution], *,
                   on_step: StepCallback | None = None) -> Iterator[SolutionResult]:
        """Each solution in turn, in input order: one engine scores one solution at a time (the remote scorer
        keeps several in flight); the same results as `score_solution` on each."""
        for solution in solutions:
            yield self.score_solution(solution, on_step=on_step)

    def use_config(self, config: ScoreConfig) -> None:
        """Score later calls with `config` (a server's per-request options). The settings fixed when the
        model was loaded (n_gpu_layers, threads, and the calibration file) must stay as they are."""
        fixed = [name for name in ("n_gpu_layers", "threads", "calibration")
                 if getattr(config, name) != getattr(self.config, name)]
        if fixed:
            raise InputError(f"{', '.join(fixed)} cannot change after the model is loaded; create a new Scorer")
        self._refuse_reentry("use_config")
        with self._lock:
            previous, self.config = self.config, config
            try:
                self._check_template_markers()
            except ModelFileError:
                self.config = previous
                raise
            self._key_base = self._prefix_base = None  # the keys hold the settings and the prompt style

    def close(self) -> None:
        """Free the model. A call in flight on another thread stops at its next decode (raising
        RprmError) and is waited for; later calls raise RprmError; closing again does nothing."""
        self._refuse_reentry("close")
        self.engine.stop()
        with self._lock:
            if not self._closed:
                self._closed = True
                self.engine.close()

    def _refuse_reentry(self, what: str) -> None:
        # The lock is not re-entrant: a call from the on_step callback of a call in flight would deadlock.
        if self._scoring_thread == threading.get_ident():
            raise RprmError(f"Scorer.{what}() was called from its own on_step callback; the call in flight holds "
                            "the scorer until it returns (collect what you need and act after it, or use a "
                            "second Scorer)")

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _score(self, solution: Solution, on_step: StepCallback | None, *, all_steps: bool | None = None
               ) -> SolutionResult:
        # the last prompt holds every step: measured first, a solution too long for the context fails at once
        last_first = (self._prompt_tokens(solution, i) for i in reversed(range(len(solution.steps))))
        max_tokens = self._fit_context(last_first)
        # KV reuse spans the steps of one solution only: each solution starts from an empty cache,
        # so its results never depend on what was scored before (same seed, same critiques).
        self._cached, self._not_loaded = [], []
        self._question_tokens = self.engine.tokenize_prompt(prompts.question_part(solution, self.config.prompt_style))
        self.engine.clear()
        results = score_in_order(
            solution, prompt_tokens=lambda index: self._prompt_tokens(solution, index),
            score_step=lambda index, tokens: self._cached_or_scored_step(solution, index, tokens, max_tokens),
            all_steps=self.config.all_steps if all_steps is None else all_steps, on_step=on_step)
        return solution_result(solution, results, aggregation=self.config.aggregation,
                               config={**self.run_metadata(), "effective_max_tokens": max_tokens})

    def _score_candidates(self, question: str, steps: list[str], candidates: list[str]) -> list[StepResult | RprmError]:
        index = len(steps)
        done: dict[int, StepResult | RprmError] = {}
        batch: list[_Candidate] = []
        longest_before: int | None = None  # the longest prompt of the steps so far: the same for every candidate
        for number, text in enumerate(candidates):
            try:
                solution = Solution.create(question, [*steps, text], id=f"candidate-{number + 1}")
                if self.config.adaptive or self.config.verdict == "released":  # waves and a second pass: alone
                    done[number] = self._score(solution, None, all_steps=True).steps[-1]
                    continue
                if longest_before is None:
                    longest_before = max((len(self._prompt_tokens(solution, i)) for i in range(index)), default=0)
                tokens = self._prompt_tokens(solution, index)
                batch.append(_Candidate(number, solution, tokens,
                                        self._critique_budget(max(longest_before, len(tokens)))))
            except (ContextOverflowError, InputError) as exc:
                done[number] = exc
        if batch:
            done.update(zip((c.number for c in batch), self._score_batch(batch, index), strict=True))
        return [done[number] for number in range(len(candidates))]

    def _score_batch(self, batch: list[_Candidate], index: int) -> list[StepResult]:
        """The batch's steps: from the step cache when the same batch was scored before, else decoded from an empty
        cache (the shared prefix put back from the prefix cache where it can be), so results never depend on what
        was scored before. A batch's results are kept under keys of the whole batch: they stand in for that
        batch's own results only, not for a candidate scored alone or in another batch (rounded otherwise)."""
        keys = self._batch_keys(batch, index)
        hits = [self.step_cache.get(key, expect={"index": index + 1, "prompt_tokens": len(candidate.tokens)})
                for key, candidate in zip(keys, batch, strict=True)] if keys else []
        if keys and all(hit is not None for hit in hits):
            return [self._decide(hit) for hit in hits if hit is not None]
        shared = min(min(common_prefix(batch[0].tokens, c.tokens) for c in batch),
                     min(len(c.tokens) for c in batch) - 1)  # each candidate decodes at least its last token
        groups = self._batch_groups(batch, shared)
        cells = max(shared + sum(self._batch_cells(c, shared) for c in group) for group in groups)
        self.engine.ensure_context(cells, 1 + max(map(len, groups)) * self.config.k, limit=self.config.n_ctx)
        self._cached, self._not_loaded = [], []
        self._question_tokens = self.engine.tokenize_prompt(
            prompts.question_part(batch[0].solution, self.config.prompt_style))
        self.engine.clear()
        steps: list[StepResult] = []
        try:
            put_back = self._load_prompt(batch[0].tokens[:shared])[1] if shared else 0
            for group in groups:
                steps += self._score_group(group, index, shared, put_back)
        except BaseException:
            self._cached = []  # the batch's sequences hold critiques of unknown extent
            self.engine.clear()
            raise
        for key, step in zip(keys, steps if keys else [], strict=True):
            self.step_cache.put(key, step)
        return steps

    def _score_group(self, group: list[_Candidate], index: int, shared: int, put_back: int) -> list[StepResult]:
        """One lock-step batch of the candidates' critiques over the shared prefix in sequence 0."""
        asks = [BatchPrompt(c.tokens, c.max_tokens, self._sources(c.solution, index)) for c in group]
        try:
            critiques = sample_batch(self.engine, asks, prefix_len=shared, step_index=index, config=self.config,
                                     vocab=self.vocab, make_sampler=self.make_sampler, stats=self.draft_stats)
        finally:
            for seq in range(PROMPT_SEQ + 1, PROMPT_SEQ + 1 + len(group) * self.config.k):
                self.engine.trim(seq)
        return [self._step_result(index, c.tokens, (shared - put_back, put_back), found, tuple(x.p_yes for x in found))
                for c, found in zip(group, critiques, strict=True)]

    def _batch_cells(self, candidate: _Candidate, shared: int) -> int:
        """KV cells a candidate takes in a batch beside the shared prefix: its own tokens and its K critiques."""
        return len(candidate.tokens) - shared + self.config.k * (candidate.max_tokens + self.vocab.reserve)

    def _batch_groups(self, batch: list[_Candidate], shared: int) -> list[list[_Candidate]]:
        """The candidates in order, in groups whose streams fit llama.cpp's sequences and whose KV cells fit
        `n_ctx`, else `BATCH_CELLS` (or what the largest candidate needs alone, when that is more)."""
        most = (MAX_SEQUENCES - 1) // self.config.k
        cap = self.config.n_ctx or max(BATCH_CELLS, max(shared + self._batch_cells(c, shared) for c in batch))
        groups: list[list[_Candidate]] = []
        used = 0
        for candidate in batch:
            cells = self._batch_cells(candidate, shared)
            if groups and len(groups[-1]) < most and used + cells <= cap:
                groups[-1].append(candidate)
                used += cells
            else:
                groups.append([candidate])
                used = shared + cells
        return groups

    def _batch_keys(self, batch: list[_Candidate], index: int) -> list[str]:
        """Step-cache keys of a batch's steps (none when the cache is off): each step's own key with the batch's."""
        made = [self._step_key(index, c.tokens, c.max_tokens) for c in batch]
        keys = [key for key in made if key is not None]
        if len(keys) < len(made):
            return []
        together = step_key({"batch": keys})
        return [step_key({"step": key, "batch": together}) for key in keys]

    def _prompt_tokens(self, solution: Solution, index: int) -> list[int]:
        return self.engine.tokenize_prompt(prompts.render(solution, index, self.config.prompt_style))

    def _cached_or_scored_step(self, solution: Solution, index: int, tokens: list[int],
                               max_tokens: int) -> StepResult:
        """The step's result from the step cache when nothing that decides it changed, else scored.

        After a hit the prompt is not decoded; when a later step is scored, the prompts of the hits
        before it are decoded first, in the same order and pieces as an uncached run decodes them, so
        the KV cache holds the same values in the same cells and later results are identical."""
        key = self._step_key(index, tokens, max_tokens)
        hit = None if key is None else self.step_cache.get(
            key, expect={"index": index + 1, "prompt_tokens": len(tokens)})  # an entry is data, not trusted
        if hit is not None:
            self._not_loaded.append(tokens)
            return self._decide(hit)
        for earlier in self._not_loaded if self.config.kv_reuse else ():
            self._load_prompt(earlier)
        self._not_loaded = []
        step = self._score_step(solution, index, tokens, max_tokens)
        if key is not None:
            self.step_cache.put(key, step)
        return step

    def _step_key(self, index: int, tokens: list[int], max_tokens: int) -> str | None:
        if not self.step_cache.enabled or self.make_sampler is not Sampler:
            return None  # a scripted sampler (tests, benchmarks) writes critiques the key cannot see
        if self._key_base is None:
            # with adaptive K the threshold decides how many critiques a step draws, so it is in the key
            ignored = set(NOT_IN_STEP_KEY) - ({"threshold"} if self.config.adaptive else set())
            settings = {k: v for k, v in self.config.to_dict().items() if k not in ignored}
            self._key_base = {**self._engine_key(), "settings": settings}
        return step_key({**self._key_base, "step_index": index, "max_tokens": max_tokens, "tokens": tokens})

    def _engine_key(self) -> dict[str, Any]:
        """What decides the values the engine computes for given tokens: the model file, its adapters (a
        different adapter or scale never reuses a result), the llama.cpp build and how it runs."""
        import llama_cpp

        adapters = self.model_info.adapters
        return {"model_sha256": self.model_info.sha256,
                **({"lora": [(a.sha256, a.scale) for a in adapters]} if adapters else {}),
                "threads": self.engine.threads, "n_batch": self.engine.n_batch, **versions(),
                "system": llama_cpp.llama_print_system_info().decode(errors="replace")}

    def _decide(self, step: StepResult) -> StepResult:
        """Score (calibrated when a map is set) and verdict from the step's mean P(Yes)."""
        raw = step.score if step.raw_score is None else step.raw_score
        assert raw is not None, "a scored step, or a cache entry checked to have a score"
        mapping = self.calibration if self.calibration is not None and self.calibration.mapping is not None else None
        score = mapping.score(raw) if mapping is not None else raw
        return replace(step, score=score, raw_score=raw if mapping is not None else None,
                       verdict=step_verdict(score, self.config.threshold, self.config.uncertain_band))

    def _score_step(self, solution: Solution, index: int, tokens: list[int], max_tokens: int) -> StepResult:
        reused = self._load_prompt(tokens)
        if self.config.adaptive:
            return self._score_step_adaptive(solution, index, tokens, max_tokens, reused)
        critiques = sample_critiques(self.engine, prompt_len=len(tokens), last_row=self._last_row,
                                     step_index=index, config=self.config, vocab=self.vocab,
                                     max_tokens=max_tokens, make_sampler=self.make_sampler,
                                     sources=self._sources(solution, index), prompt=tokens, stats=self.draft_stats)
        p_yes = tuple(c.p_yes for c in critiques)
        if self.config.verdict == "released":
            prompt = prompts.render(solution, index, self.config.prompt_style)
            p_yes = tuple(released_p_yes(self.engine, prompt, tokens, critiques, self.vocab))
        return self._step_result(index, tokens, reused, critiques, p_yes)

    def _score_step_adaptive(self, solution: Solution, index: int, tokens: list[int], max_tokens: int,
                             reused: tuple[int, int]) -> StepResult:
        def read_p_yes(wave: list[CritiqueResult]) -> list[float]:
            if self.config.verdict == "released":
                prompt = prompts.render(solution, index, self.config.prompt_style)
                return released_p_yes(self.engine, prompt, tokens, wave, self.vocab)
            return [c.p_yes for c in wave]

        critiques, p_yes, reason = sample_in_waves(
            self.engine, prompt_len=len(tokens), last_row=self._last_row, step_index=index, config=self.config,
            vocab=self.vocab, max_tokens=max_tokens, read_p_yes=read_p_yes, make_sampler=self.make_sampler,
            sources=self._sources(solution, index), prompt=tokens, stats=self.draft_stats)
        result = self._step_result(index, tokens, reused, critiques, tuple(p_yes))
        return replace(result, critiques_used=len(critiques), stop_reason=reason)

    def _sources(self, solution: Solution, index: int) -> Sources | None:
        """The numbers step `index`'s critiques may quote, for the calculator's source check."""
        if self.config.calculator != "on":
            return None
        return Sources.of(solution.question, solution.steps[:index], solution.steps[index])

    def _step_result(self, index: int, tokens: list[int], reused: tuple[int, int], critiques: list[CritiqueResult],
                     p_yes: tuple[float, ...]) -> StepResult:
        score = sum(p_yes) / len(p_yes)
        kept, put_back = reused
        return self._decide(StepResult(
            index=index + 1, score=score, p_yes=p_yes, verdict="not scored",  # decided from the score
            fallbacks=sum(c.fallback for c in critiques),
            generated_tokens=sum(c.tokens for c in critiques),
            critiques=tuple(c.text for c in critiques),
            prompt_tokens=len(tokens), reused_tokens=kept, prefix_tokens=put_back or None,
            calculated=tuple(c.calculated for c in critiques) if self.config.calculator == "on" else None))

    def _load_prompt(self, tokens: list[int]) -> tuple[int, int]:
        """Put `tokens` in sequence 0, decoding only what is not cached; returns the tokens kept from the
        previous prompt and those put back from the prefix cache."""
        try:
            return self._decode_prompt(tokens)
        except BaseException:
            self._cached = []  # the cache state is unknown after a failed or interrupted decode
            self.engine.clear()
            raise

    def _decode_prompt(self, tokens: list[int]) -> tuple[int, int]:
        """Decode what sequence 0 lacks of `tokens`, in pieces cut at the prompt's marks; returns the tokens
        kept from the solution's previous prompt and those put back from the prefix cache. A prompt decoded
        from its first token starts from an empty cache, and the longest piece before a mark whose KV state
        is cached is put back instead of decoded."""
        engine = self.engine
        for seq in range(1, self.config.k + 1):
            engine.trim(seq)
        keep = common_prefix(self._cached, tokens) if self.config.kv_reuse else 0
        keep = min(keep, len(tokens) - 1)  # the last token is always decoded: its logits start the critiques
        self._cached = self._cached[:keep]
        marks = [mark for mark in self._marks(tokens) if keep < mark < len(tokens)]
        start = keep
        if keep == 0:
            engine.clear()  # the same cells, whether the prefix is decoded or put back
            start = self._restore_prefix(tokens, marks)
        else:
            engine.trim(PROMPT_SEQ, keep)
        for begin, end in zip([start, *marks], [*marks, len(tokens)], strict=True):
            if end <= start:
                continue
            entries = [DecodeEntry(tokens[pos], pos, PROMPT_SEQ, logits=pos == len(tokens) - 1)
                       for pos in range(begin, end)]
            for _, row in engine.decode(entries):
                self._last_row = row
            if end in marks and keep == 0:  # pieces decoded from empty: the values a fresh run computes
                self._save_prefix(tokens[:end], persist=end == marks[0])
        self._cached = list(tokens)
        return keep, start - keep

    def _marks(self, tokens: list[int]) -> list[int]:
        """Where a prompt's pieces end: its tokens shared with the template's text before the question alone,
        then with the text up to the question's end (the solution's first prompt up to the question). Each
        is a function of the prompt alone (its last token may join the user text that follows, so it is
        measured on the prompt), so a prompt is cut the same way whatever was scored before."""
        style = self.config.prompt_style
        if style not in self._head_tokens:
            self._head_tokens[style] = self.engine.tokenize_prompt(prompts.head_part(style))
        head = self._head_tokens[style]
        return sorted({common_prefix(head, tokens), common_prefix(self._question_tokens, tokens)} - {0})

    def _restore_prefix(self, tokens: list[int], marks: list[int]) -> int:
        """Put the longest cached prefix that ends at a mark into the empty cache; returns its length (or 0)."""
        if self.prefix_cache is None or not marks:
            return 0
        self.prefix_cache.lookups += 1
        for mark in reversed(marks):
            key = self._prefix_key(tokens[:mark])
            state = self.prefix_cache.get(key, mark)
            if state is None:
                continue
            if self.engine.load_sequence(PROMPT_SEQ, state, mark):
                self.prefix_cache.restored += 1
                self.prefix_cache.saved_tokens += mark
                return mark
            self.prefix_cache.refused(key)
        return 0

    def _save_prefix(self, prefix: list[int], *, persist: bool) -> None:
        """Keep the KV state of sequence 0, which holds just `prefix`, unless it is kept already."""
        if self.prefix_cache is None:
            return
        key = self._prefix_key(prefix)
        if key not in self.prefix_cache:
            self.prefix_cache.put(key, self.engine.save_sequence(PROMPT_SEQ), len(prefix), persist=persist)

    def _prefix_key(self, prefix: list[int]) -> str:
        if self._prefix_base is None:
            style = self.config.prompt_style
            self._prefix_base = {**self._engine_key(), "prompt_style": style,
                                 "prompt_sha256": prompts.template_hash(style),
                                 "n_gpu_layers": self.config.n_gpu_layers,
                                 "buffers": self.engine.buffer_rule.describe()}
        return state_key(self._prefix_base, prefix)

    def _fit_context(self, prompt_tokens: Iterable[Sequence[int]]) -> int:
        """Size the KV cache for this solution; returns the max new tokens a critique may use.

        Each critique is its own sequence, so its positions (prompt + critique + fallback) must stay
        within the model's training context; the cache holds the prompt once plus K critiques, so it
        may be larger than that. `n_ctx`, when set, caps the cache and shortens critiques to fit.
        Prompts are checked as they come (an iterator keeps one in memory at a time), so an overflow
        is raised at the first prompt that does not fit.
        """
        longest = 0
        for tokens in prompt_tokens:
            longest = max(longest, len(tokens))
            per_critique = self._critique_budget(longest)
        self.engine.ensure_context(longest + self.config.k * (per_critique + self.vocab.reserve), self.config.k + 1,
                                   limit=self.config.n_ctx)
        return per_critique

    def _critique_budget(self, longest: int) -> int:
        return critique_budget(self.config, longest, positions=self.context_positions,
                               reserve=self.vocab.reserve, n_ctx=self.config.n_ctx)

    @property
    def context_positions(self) -> int:
        """The positions a sequence may use: the model's training context (4096 when the file names none)."""
        return self.engine.n_ctx_train or DEFAULT_POSITIONS

    def run_settings(self) -> dict[str, Any]:
        """What decides a result (`rprm_lite.scorer.run_settings`): the settings, the model file and its
        adapters, the prompt template and the calibration."""
        return run_settings(self.model_info, self.config, self.calibration)

    def run_metadata(self) -> dict[str, Any]:
        return {**run_settings(self.model_info, self.config, self.calibration), **versions()}

    def _find_vocabulary(self) -> Vocabulary:
        yes = self._verdict_token(metadata.YES_TEXT, self.model_info.yes_token_id)
        no = self._verdict_token(metadata.NO_TEXT, self.model_info.no_token_id)
        return Vocabulary(yes=yes, no=no,
                          fallback=tuple(self.engine.tokenize(prompts.FALLBACK_TEXT, special=False)))

    def _verdict_token(self, text: str, from_metadata: int | None) -> int:
        """The single token of " Yes" / " No": from rprm.* metadata when present (checked), else tokenized."""
        name = self.model_info.path.name
        if from_metadata is not None:
            if not 0 <= from_metadata < self.engine.n_vocab or self.engine.piece(from_metadata) != text.encode():
                raise ModelFileError(f"{name}: metadata says {text!r} is token {from_metadata}, but that token is "
                                     f"not {text!r} in this vocabulary of {self.engine.n_vocab}; reconvert the model")
            return from_metadata
        tokens = self.engine.tokenize(text, special=False)
        if len(tokens) != 1:
            raise ModelFileError(f"{name}: the vocabulary has no single token for ' Yes' and ' No' ({text!r} "
                                 f"tokenizes as {tokens}); R-PRM reads P(Yes) from one token each")
        return tokens[0]

    def _check_template_markers(self) -> None:
        text = "".join(prompts.template(self.config.prompt_style))
        for marker in sorted(set(prompts.SPECIAL_MARKER.findall(text))):
            if len(self.engine.tokenize(marker, special=True)) != 1:
                raise ModelFileError(f"{self.model_info.path.name}: the vocabulary has no {marker} token; "
                                     f"the {self.config.prompt_style} prompt needs ChatML special tokens")


@dataclass(frozen=True)
class _Candidate:
    """A candidate of `score_candidates` in a batch: its place, its solution, its step's prompt and budget."""

    number: int
    solution: Solution
    tokens: list[int]
    max_tokens: int

