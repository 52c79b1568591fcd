"""The scorer seam: what every scorer is (`Scorer`) and the R-PRM recipe that every scorer follows.

Two backends implement `Scorer` side by side: the llama.cpp engine in this process (`rprm_lite/scoring.py`)
and OpenAI-compatible servers (`rprm_lite/remote/scorer.py`); `rprm_lite/job.py` picks one for a job
(`make_scorer`). Commands, the solver and the benchmarks take a `Scorer` and never ask which one it is.

The recipe below is what makes the two give the same results: every step in order up to the first wrong one
(`score_in_order`), the solution's result from its steps (`solution_result`), how long a critique may be
(`critique_budget`), which settings a run uses (`resolve_settings`) and which of them decide a result
(`run_settings`). A step's verdict from its score is `rprm_lite/verdict_rule.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rprm_lite import prompt as prompts
from rprm_lite.calibration import Calibration, calibrated_config, load_calibration
from rprm_lite.config import ScoreConfig, sampled_when_several
from rprm_lite.errors import ContextOverflowError, RprmError
from rprm_lite.model_file import ModelInfo
from rprm_lite.results import SolutionResult, StepResult, aggregate
from rprm_lite.solution import Solution
from rprm_lite.verdict_rule import first_uncertain

if TYPE_CHECKING:
    from rprm_lite.drafts import DraftStats
    from rprm_lite.prefix_cache import PrefixCache

MIN_CRITIQUE_TOKENS = 16
DEFAULT_POSITIONS = 4096  # a model file that states no context length
StepCallback = Callable[[Solution, StepResult], None]


class Scorer(Protocol):
    """A scorer of solutions, local or remote: the same results for the same settings, model and seed.

    Its settings are fixed when it is made. `prefix_cache` and `draft_stats` are what the local engine keeps
    (the prompt prefixes' KV states, what `--draft` did); a scorer without them gives None.
    """

    @property
    def config(self) -> ScoreConfig:
        """The settings every solution is scored with."""

    @property
    def context_positions(self) -> int:
        """The positions one sequence (a prompt and its critique) may use: the model's context."""

    @property
    def prefix_cache(self) -> PrefixCache | None: ...

    @property
    def draft_stats(self) -> DraftStats | None: ...

    def score(self, question: str, steps: Sequence[str], *, id: str | None = None,
              on_step: StepCallback | None = None) -> SolutionResult:
        """One solution given as its question and steps."""

    def score_solution(self, solution: Solution, *, on_step: StepCallback | None = None) -> SolutionResult:
        """One solution; `on_step(solution, step)` hears of each step as soon as it is known."""

    def score_many(self, solutions: Iterable[Solution], *,
                   on_step: StepCallback | None = None) -> Iterator[SolutionResult]:
        """Every solution's result, in input order (a remote scorer keeps several in flight)."""

    def score_candidates(self, question: str, steps: Sequence[str], candidates: Sequence[str], *,
                         should_stop: Callable[[], bool] | None = None) -> list[StepResult | RprmError]:
        """Each candidate scored as the next step after `steps` (a guided search's step), in its place: the result
        of its step, or the error that kept it from being scored (the local engine scores them in one batch)."""

    def run_settings(self) -> dict[str, object]:
        """What decides a result: the settings, the model (and adapters, calibration), the prompt."""

    def run_metadata(self) -> dict[str, object]:
        """`run_settings` and the versions of the libraries that computed the results."""

    def close(self) -> None:
        """Free what the scorer holds; later calls raise `RprmError`."""

    def __enter__(self) -> Scorer: ...

    def __exit__(self, *exc: object) -> None: ...


def score_in_order(solution: Solution, *, prompt_tokens: Callable[[int], list[int]],
                   score_step: Callable[[int, list[int]], StepResult], all_steps: bool,
                   on_step: StepCallback | None) -> list[StepResult]:
    """Every step in order, `score_step(index, tokens)` for each up to the first wrong one (all of them with
    `all_steps`), "not scored" after it; `on_step` hears of each step as soon as it is known."""
    results: list[StepResult] = []
    stopped = False
    for index in range(len(solution.steps)):
        tokens = prompt_tokens(index)
        if stopped:
            results.append(StepResult(index=index + 1, score=None, p_yes=(), verdict="not scored",
                                      prompt_tokens=len(tokens)))
        else:
            results.append(score_step(index, tokens))
            stopped = results[-1].verdict == "wrong" and not all_steps
        if on_step is not None:
            on_step(solution, results[-1])
    return results


def solution_result(solution: Solution, steps: Sequence[StepResult], *, aggregation: str,
                    config: dict[str, Any]) -> SolutionResult:
    """The solution's result from its steps: first error, first uncertain step, aggregated score."""
    scored = [s.score for s in steps if s.score is not None]
    first_error = next((s.index for s in steps if s.verdict == "wrong"), None)
    return SolutionResult(id=solution.id, steps=tuple(steps), first_error_step=first_error,
                          solution_score=aggregate(scored, aggregation), config=config, extra=dict(solution.extra),
                          first_uncertain_step=first_uncertain([s.verdict for s in steps]))


def critique_budget(config: ScoreConfig, longest: int, *, positions: int, reserve: int, n_ctx: int | None,
                    advice: str = "lower --k, shorten the solution, or raise --n-ctx if the model allows it") -> int:
    """New tokens a critique may write after a prompt of `longest` tokens: the model's `positions` less the
    `reserve` (the fallback question and the verdict token), and with an `n_ctx` cap a K-th of what is left
    of it; raises (with `advice`) when that leaves too few. The local and the remote scorer size critiques
    alike."""
    per_critique = min(config.max_tokens, positions - longest - reserve)
    if n_ctx is not None:
        per_critique = min(per_critique, (n_ctx - longest) // config.k - reserve)
    if per_critique < min(config.max_tokens, MIN_CRITIQUE_TOKENS):
        capped = n_ctx is not None and n_ctx < positions
        raise ContextOverflowError(
            f"the longest step prompt is at least {longest} tokens and the context is "
            f"{n_ctx if capped else positions} tokens: no room for {config.k} critiques of at least "
            f"{MIN_CRITIQUE_TOKENS} tokens; {advice}")
    return per_critique


def run_settings(info: ModelInfo, config: ScoreConfig, calibration: Calibration | None = None) -> dict[str, Any]:
    """What decides a result: every setting, the model file and its LoRA adapters (file, sha256, scale), the
    prompt template and the calibration (by hash)."""
    extra: dict[str, Any] = {}
    if config.calibration is not None:
        extra["calibration_sha256"] = (calibration or load_calibration(config.calibration)).sha256
    if info.adapters:
        extra["lora"] = [adapter.record() for adapter in info.adapters]
    return {**config.to_dict(), "model": info.path.name, "model_sha256": info.sha256,
            "prompt_sha256": prompts.template_hash(config.prompt_style), **extra}


def resolve_settings(info: ModelInfo, config: ScoreConfig | None = None, overrides: dict[str, Any] | None = None
                     ) -> tuple[ScoreConfig, Calibration | None]:
    """`config`, else the model file's rprm.* settings over the defaults; `overrides` on top; with a
    calibration file, its threshold (the file is checked against the model, its adapters and the settings).
    Also returns the calibration it read (None without one), so callers need not read the file again."""
    base = config or info.default_config()
    settings = base.replace(**overrides) if overrides else base
    if config is None:
        settings = sampled_when_several(settings, overrides or {})
    return calibrated_config(settings, info.sha256, [adapter.record() for adapter in info.adapters])
