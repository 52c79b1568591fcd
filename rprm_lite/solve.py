"""`Solver`: a policy writes a math solution, step by step, and the R-PRM judge chooses among its attempts.

Four strategies (`SolveConfig.strategy`):
- `greedy`: the policy alone, one greedy solution;
- `majority`: N sampled solutions, the most frequent final answer (the earliest sample's on ties);
- `best-of-n`: N sampled solutions, each scored by the judge (every step), the best by the judge's aggregation
  (`--aggregation`, as `rerank` ranks); solutions with an answer before those without, the earliest on ties;
- `guided`: R-PRM's step-level search: at each step the policy proposes N next steps (sampled together over the
  shared prefix, `rprm_lite/policy_engine.py`), the judge scores them as next steps of the solution so far (all N
  together, `Scorer.score_candidates`), and the best is kept (the earliest on ties; a candidate text proposed
  twice is scored once), until a step gives the answer, the policy ends its turn, or `max_steps`. When the judge
  finds every candidate of a step wrong (below its threshold), the search stops there with outcome "no good
  step" (`no_good_step="stop"`, the default) or keeps the best anyway, as R-PRM's search does ("keep").
The strategies are plain functions of a `Search` (propose, judge), so their choices can be checked with a
scripted policy and judge. `Solver` holds the two models (one process), a lock and the cancellation.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rprm_lite.adapter_file import LoraArg
from rprm_lite.config import MAX_K
from rprm_lite.errors import ContextOverflowError, InputError, RprmError
from rprm_lite.options import Settings, option
from rprm_lite.policy import final_answer
from rprm_lite.results import SolutionResult, StepResult, aggregate
from rprm_lite.seeds import LLAMA_SEED_MASK, derive_seed
from rprm_lite.solution import Solution

if TYPE_CHECKING:  # the policy engine loads llama.cpp: imported when a Solver is made, not with the CLI
    from rprm_lite.policy_engine import Draft, PolicyModel

Strategy = Literal["greedy", "majority", "best-of-n", "guided"]
STRATEGIES: tuple[str, ...] = ("greedy", "majority", "best-of-n", "guided")
Outcome = Literal["answered", "no answer", "max steps", "no good step", "error"]
NoGoodStep = Literal["stop", "keep"]
JUDGED = ("best-of-n", "guided")  # the strategies that load the judge


@dataclass(frozen=True)
class SolveConfig(Settings):
    """Every setting of a search; the judge's own settings are its `ScoreConfig`."""

    strategy: Strategy = option("guided", help="greedy (the policy alone), majority (N samples, the most frequent "
                                "answer), best-of-n (N samples, the judge's best) or guided (N next steps at each "
                                "step, the judge's best kept).")
    n: int = option(8, help="Candidates: solutions (majority, best-of-n) or next steps (guided).")
    max_steps: int = option(12, help="Steps a solution may have.")
    step_tokens: int = option(96, help="Tokens the policy may write for one step (a whole solution: max-steps "
                              "times this).")
    policy_temperature: float = option(0.7, help="The policy's sampling temperature (greedy uses 0).")
    policy_top_p: float = option(0.95, help="The policy's nucleus sampling.")
    policy_seed: int = option(0, help="Seed of every sampled candidate.")
    no_good_step: NoGoodStep = option("stop", help="guided: when the judge finds every next step wrong (below its "
                                      "threshold): stop (outcome 'no good step', no answer) or keep the best and go "
                                      "on, as R-PRM's search does.")

    def problems(self) -> Iterator[str]:
        yield from self.at_least(n=1, max_steps=1, step_tokens=1, policy_temperature=0)
        if self.n > MAX_K:
            yield f"n must be at most {MAX_K} (llama.cpp's parallel sequences), got {self.n}"
        if not 0 < self.policy_top_p <= 1:
            yield f"policy_top_p must be in (0, 1], got {self.policy_top_p}"


@dataclass(frozen=True)
class Candidate:
    """One proposal: a next step (guided) or a whole solution's steps (majority, best-of-n)."""

    steps: tuple[str, ...]
    score: float | None  # the judge's: the step's (guided) or the solution's aggregated score; None unjudged
    answer: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "score": self.score, "answer": self.answer}


@dataclass(frozen=True)
class SolvedStep:
    text: str
    score: float | None  # None: the strategy did not judge it (greedy, majority)
    candidates: tuple[Candidate, ...] = ()  # guided: every next step proposed here
    chosen: int | None = None  # guided: which of them is this step (0-based)


@dataclass(frozen=True)
class Work:
    policy_tokens: int = 0
    critiques: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Found:
    """What a strategy found: the steps, the final answer and why the search ended."""

    steps: tuple[SolvedStep, ...]
    answer: str | None
    outcome: Outcome
    candidates: tuple[Candidate, ...] = ()  # majority, best-of-n: every sampled solution


@dataclass(frozen=True)
class SolveResult:
    """One question's result; `to_dict()` is the JSON object `rprm-lite solve --json` prints."""

    id: str
    strategy: str
    steps: tuple[SolvedStep, ...]
    answer: str | None
    outcome: Outcome
    work: Work
    candidates: tuple[Candidate, ...] = ()
    error: str | None = None  # outcome "error": why this question has no solution (the others go on)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, candidates: bool = False) -> dict[str, Any]:
        steps = []
        for step in self.steps:
            entry: dict[str, Any] = {"text": step.text, "score": step.score}
            if candidates and step.candidates:
                entry["candidates"] = [{"text": c.steps[0] if c.steps else "", "score": c.score}
                                       for c in step.candidates]
                entry["chosen"] = step.chosen
            steps.append(entry)
        data: dict[str, Any] = {"id": self.id, "strategy": self.strategy, "steps": steps, "answer": self.answer,
                                "outcome": self.outcome, "work": asdict(self.work)}
        if self.error is not None:
            data["error"] = self.error
        if candidates and self.candidates:
            data["candidates"] = [c.to_dict() for c in self.candidates]
        data["config"] = self.config
        return data


class Search(Protocol):
    """What a strategy asks of the models: `propose` N continuations of the steps so far (whole solutions, or
    one step each), `judge` a solution (every step scored), `judge_next` candidate next steps of the steps so far
    (each one's result, or the error that kept it from being scored). `round` numbers the proposals of one
    question."""

    def propose(self, steps: Sequence[str], n: int, *, whole: bool, greedy: bool, round: int) -> list[Draft]: ...

    def judge(self, steps: Sequence[str]) -> SolutionResult: ...

    def judge_next(self, steps: Sequence[str], candidates: Sequence[str]) -> list[StepResult | RprmError]: ...


# -- the strategies ------------------------------------------------------------------------------------
def search(strategy: str, model: Search, config: SolveConfig, *, aggregation: str = "min",
           on_critiques: Callable[[int], None] = lambda n: None,
           on_step: Callable[[SolvedStep], None] | None = None) -> Found:
    """Run one strategy; `on_critiques(count)` hears of the judge's new critiques, `on_step(step)` of each step
    of the solution as soon as it is chosen (guided), or once the solution is (the others)."""
    if strategy == "guided":
        return _guided(model, config, on_critiques, on_step or (lambda step: None))
    if strategy == "best-of-n":
        found = _best_of_n(model, config, aggregation, on_critiques)
    else:
        found = _majority(model, 1 if strategy == "greedy" else config.n, config, greedy=strategy == "greedy")
    if on_step is not None:
        for step in found.steps:
            on_step(step)
    return found


def solution_steps(text: str, max_steps: int) -> tuple[tuple[str, ...], str | None, Outcome]:
    """A whole completion's steps (its non-blank lines, up to the first that gives an answer), the answer, and
    the outcome: "answered", else "max steps" when it has more lines than allowed, else "no answer"."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    for number, line in enumerate(lines[:max_steps], start=1):
        answer = final_answer(line)
        if answer is not None:
            return tuple(lines[:number]), answer, "answered"
    return tuple(lines[:max_steps]), None, "max steps" if len(lines) > max_steps else "no answer"


def answer_key(answer: str) -> str:
    """Answers compared as numbers where they are ("12", "12.0" and "012" are one answer)."""
    try:
        return str(Decimal(answer).normalize())
    except InvalidOperation:
        return answer.strip()


def _majority(model: Search, n: int, config: SolveConfig, *, greedy: bool) -> Found:
    drafts = model.propose([], n, whole=True, greedy=greedy, round=0)
    parsed = [solution_steps(draft.text, config.max_steps) for draft in drafts]
    candidates = tuple(Candidate(steps=steps, score=None, answer=answer) for steps, answer, _ in parsed)
    keys = [answer_key(c.answer) if c.answer is not None else None for c in candidates]
    counts = Counter(key for key in keys if key is not None)
    if not counts:
        chosen = 0
    else:
        top = max(counts.values())
        chosen = next(i for i, key in enumerate(keys) if key is not None and counts[key] == top)
    steps, answer, outcome = parsed[chosen]
    return Found(tuple(SolvedStep(text, None) for text in steps), answer, outcome,
                 candidates if n > 1 else ())


def _best_of_n(model: Search, config: SolveConfig, aggregation: str, on_critiques: Callable[[int], None]) -> Found:
    drafts = model.propose([], config.n, whole=True, greedy=False, round=0)
    parsed = [solution_steps(draft.text, config.max_steps) for draft in drafts]
    judged: list[tuple[float | None, ...]] = []
    for steps, _, _ in parsed:
        if not steps:
            judged.append(())
            continue
        result = model.judge(steps)
        on_critiques(sum(len(step.p_yes) for step in result.steps))
        judged.append(tuple(result.scores))
    scores = [_solution_score(step_scores, aggregation) for step_scores in judged]
    best = max(range(len(parsed)), key=lambda i: (parsed[i][1] is not None, _ranked(scores[i]), -i))
    steps, answer, outcome = parsed[best]
    candidates = tuple(Candidate(steps=s, score=score, answer=a) for (s, a, _), score in zip(parsed, scores,
                                                                                             strict=True))
    return Found(tuple(SolvedStep(text, score) for text, score in zip(steps, judged[best], strict=True)),
                 answer, outcome, candidates)


def _guided(model: Search, config: SolveConfig, on_critiques: Callable[[int], None],
            on_step: Callable[[SolvedStep], None]) -> Found:
    chosen: list[SolvedStep] = []
    for round in range(1, config.max_steps + 1):
        so_far = [step.text for step in chosen]
        drafts = model.propose(so_far, config.n, whole=False, greedy=False, round=round)
        scored = _judge_next(model, so_far, [d.text for d in drafts], on_critiques)
        candidates = tuple(Candidate(steps=(d.text,), score=_score_of(scored.get(d.text)),
                                     answer=final_answer(d.text)) for d in drafts)
        usable = [i for i, d in enumerate(drafts) if d.text]
        if not usable:
            return Found(tuple(chosen), None, "no answer")
        if config.no_good_step == "stop" and not any(_good(result) for result in scored.values()):
            return Found(tuple(chosen), None, "no good step", candidates)
        best = max(usable, key=lambda i: (_ranked(candidates[i].score), -i))
        chosen.append(SolvedStep(drafts[best].text, candidates[best].score, candidates, best))
        on_step(chosen[-1])
        if candidates[best].answer is not None:
            return Found(tuple(chosen), candidates[best].answer, "answered")
        if drafts[best].ending == "turn":
            return Found(tuple(chosen), None, "no answer")
    return Found(tuple(chosen), None, "max steps")


def _judge_next(model: Search, so_far: list[str], texts: list[str],
                on_critiques: Callable[[int], None]) -> dict[str, StepResult | None]:
    """Each distinct candidate text's result (None: it could not be scored); when none could be, the first
    candidate's error is raised (the question's outcome is then "error")."""
    distinct = list(dict.fromkeys(text for text in texts if text))
    if not distinct:
        return {}
    judged = model.judge_next(so_far, distinct)
    errors = [result for result in judged if isinstance(result, RprmError)]
    if len(errors) == len(distinct):
        raise errors[0]
    scored: dict[str, StepResult | None] = {}
    for text, result in zip(distinct, judged, strict=True):
        scored[text] = None if isinstance(result, RprmError) else result
        if not isinstance(result, RprmError):
            on_critiques(len(result.p_yes))
    return scored


def _score_of(result: StepResult | None) -> float | None:
    return None if result is None else result.score


def _good(result: StepResult | None) -> bool:
    """Whether the judge gave the step a score and did not find it wrong (below its threshold)."""
    return result is not None and result.score is not None and result.verdict != "wrong"


def _solution_score(step_scores: Sequence[float | None], how: str) -> float | None:
    scored = [score for score in step_scores if score is not None]
    return aggregate(scored, how) if scored and len(scored) == len(step_scores) else None


def _ranked(score: float | None) -> float:
    return -1.0 if score is None else score  # a score the judge could not give ranks below every other


# -- the solver ----------------------------------------------------------------------------------------
StepCallback = Callable[[str, SolvedStep], None]


class Solver:
    """A policy and (for best-of-n and guided) the R-PRM judge, loaded once in one process.

    >>> solver = Solver(config=SolveConfig(strategy="guided", n=4), threads=1)   # doctest: +SKIP
    >>> solver.solve("Ben has 3 apples and buys 4 more. How many apples does he have?").answer  # doctest: +SKIP

    `policy`: a chat GGUF (with `policy_lora` adapters), or a loaded `PolicyModel`; default the demo base with the
    bundled policy adapter (`resolve_policy`). `judge`: a scorer object (`Scorer`, `RemoteScorer`: anything with
    `score_solution`, which must score every step, and `score_candidates`), else the GGUF path of a local `Scorer`
    built with `judge_options` (ScoreConfig fields, `lora`, `prefix_cache`; `all_steps` is forced on), loaded when
    a strategy first needs it. Calls are serialized by a lock; `close()` stops a call in flight (it raises
    RprmError), waits for it and frees what this Solver loaded; `solve(..., should_stop=event.is_set)` cancels one
    call (`ScoringCancelled`), after which the Solver stays usable.
    """

    def __init__(self, policy: str | Path | PolicyModel | None = None, judge: Any = None, *,
                 policy_lora: Sequence[LoraArg] = (), config: SolveConfig | None = None, threads: int | None = None,
                 judge_options: dict[str, Any] | None = None) -> None:
        from rprm_lite.policy_engine import PolicyModel, resolve_policy

        self.config = config or SolveConfig()
        self.note: str | None = None
        if isinstance(policy, PolicyModel):
            self.policy, self._owns_policy = policy, False
        else:
            path, adapters, self.note = resolve_policy(policy, policy_lora)
            self.policy, self._owns_policy = PolicyModel(path, lora=adapters, threads=threads), True
        self._judge = judge if hasattr(judge, "score_solution") else None
        if self._judge is not None and not getattr(self._judge.config, "all_steps", True):
            raise InputError("the judge must score every step of a candidate: make its scorer with all_steps=True")
        self._owns_judge = self._judge is None
        self._judge_model = None if self._judge is not None else judge
        self._judge_options = {"threads": threads, **(judge_options or {}), "all_steps": True}
        self._lock = threading.Lock()
        self._thread: int | None = None
        self._closed = False

    @property
    def judge(self) -> Any:
        """The judge's scorer, loaded on first use."""
        if self._judge is None:
            from rprm_lite.scoring import Scorer

            self._judge = Scorer(self._judge_model, **self._judge_options)
        return self._judge

    def solve(self, question: str, *, id: str | None = None, strategy: str | None = None,
              on_step: StepCallback | None = None, should_stop: Callable[[], bool] | None = None) -> SolveResult:
        """Solve one question (`strategy` overrides the config's). A question the models cannot solve (a
        prompt or step longer than a context) gives outcome "error" with the reason, not an exception."""
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{id or 'question'}: the question has no text; expected a non-empty string")
        if self._thread == threading.get_ident():
            raise RprmError("Solver.solve() was called from its own on_step callback; act after it returns")
        with self._lock:
            if self._closed:
                raise RprmError("this Solver is closed; create a new one to solve")
            self._thread = threading.get_ident()
            try:
                return self._solve(question, id or "question", strategy or self.config.strategy, on_step,
                                   should_stop)
            finally:
                self._thread = None

    def _solve(self, question: str, id: str, strategy: str, on_step: StepCallback | None,
               should_stop: Callable[[], bool] | None) -> SolveResult:
        if strategy not in STRATEGIES:
            raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        started = time.monotonic()
        models = _Models(self, question, should_stop)
        critiques = [0]
        try:
            found = search(strategy, models, self.config, aggregation=self._aggregation(strategy),
                           on_critiques=lambda count: critiques.__setitem__(0, critiques[0] + count),
                           on_step=None if on_step is None else lambda step: on_step(id, step))
            error: str | None = None
        except (ContextOverflowError, InputError) as exc:  # this question only: the others go on
            found, error = Found((), None, "error"), str(exc)
        work = Work(policy_tokens=models.tokens, critiques=critiques[0],
                    seconds=round(time.monotonic() - started, 3))
        return SolveResult(id=id, strategy=strategy, steps=found.steps, answer=found.answer, outcome=found.outcome,
                           work=work, candidates=found.candidates, error=error, config=self.settings(strategy))

    def _aggregation(self, strategy: str) -> str:
        return str(self.judge.config.aggregation) if strategy == "best-of-n" else "min"

    def settings(self, strategy: str | None = None) -> dict[str, Any]:
        """What decides a result: the search's settings, the policy (files and sha256), and the judge's run
        settings for the strategies that use it."""
        strategy = strategy or self.config.strategy
        info = self.policy.model_info
        policy = {"model": info.path.name, "model_sha256": info.sha256,
                  "lora": [adapter.record() for adapter in info.adapters]}
        judge = _judge_settings(self.judge) if strategy in JUDGED else None
        return {**self.config.replace(strategy=strategy).to_dict(), "policy": policy, "judge": judge}

    def close(self) -> None:
        """Stop a call in flight, wait for it, and free the models this Solver loaded."""
        if self._thread == threading.get_ident():
            raise RprmError("Solver.close() was called from its own on_step callback; close it after the call")
        if self._owns_policy:
            self.policy.stop()
        if self._owns_judge and self._judge is not None:
            self._judge.engine.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owns_policy:
                self.policy.close()
            if self._owns_judge and self._judge is not None:
                self._judge.close()

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _judge_settings(judge: Any) -> dict[str, Any]:
    from rprm_lite.scorer import run_settings
    from rprm_lite.scoring import Scorer

    if isinstance(judge, Scorer):
        return run_settings(judge.model_info, judge.config, judge.calibration)
    return dict(judge.run_settings())


class _Models:
    """The `Search` of one question: the solver's policy and judge, its seeds and its token count."""

    def __init__(self, solver: Solver, question: str, should_stop: Callable[[], bool] | None) -> None:
        self.solver, self.question, self.should_stop = solver, question, should_stop
        self.tokens = 0

    def propose(self, steps: Sequence[str], n: int, *, whole: bool, greedy: bool, round: int) -> list[Draft]:
        config = self.solver.config
        seeds = [derive_seed(f"solve:{config.policy_seed}:{self.question}:{round}:{i}", LLAMA_SEED_MASK)
                 for i in range(n)]
        policy = self.solver.policy
        drafts = policy.sample(policy.tokens(self.question, steps), seeds=seeds,
                               temperature=0.0 if greedy else config.policy_temperature, top_p=config.policy_top_p,
                               max_tokens=config.step_tokens * (config.max_steps if whole else 1), one_step=not whole,
                               should_stop=self.should_stop)
        self.tokens += sum(draft.tokens for draft in drafts)
        return drafts

    def judge(self, steps: Sequence[str]) -> SolutionResult:
        from rprm_lite.scoring import Scorer

        judge = self.solver.judge
        solution = Solution.create(self.question, list(steps), id="candidate")
        if isinstance(judge, Scorer):
            return judge.score_solution(solution, should_stop=self.should_stop)
        if self.should_stop is not None and self.should_stop():
            from rprm_lite.errors import ScoringCancelled

            raise ScoringCancelled("the call was cancelled by its caller")
        return judge.score_solution(solution)  # type: ignore[no-any-return]

    def judge_next(self, steps: Sequence[str], candidates: Sequence[str]) -> list[StepResult | RprmError]:
        """The candidates scored together by the judge (`score_candidates`: one N x K batch on a local judge)."""
        judged = self.solver.judge.score_candidates(self.question, list(steps), list(candidates),
                                                    should_stop=self.should_stop)
        return list(judged)


def solve(question: str, *, strategy: str = "guided", n: int = 8, policy: str | Path | None = None,
          judge: Any = None, threads: int | None = None, **settings: Any) -> SolveResult:
    """Solve one question with models loaded for this call (a `Solver` keeps them for many)."""
    config = SolveConfig(strategy=strategy, n=n, **settings)  # type: ignore[arg-type]
    with Solver(policy, judge, config=config, threads=threads) as solver:
        return solver.solve(question)
