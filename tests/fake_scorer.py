"""A scripted scorer: the model's stand-in where the model is not the point (resume, metrics, CLI plumbing)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from rprm_lite.config import ScoreConfig
from rprm_lite.results import SolutionResult, StepResult
from rprm_lite.solution import Solution


class FakeScorer:
    """Returns scripted P(Yes) values per step: `p_yes[solution id]` is one tuple per step."""

    def __init__(self, p_yes: Mapping[str, Sequence[Sequence[float]]], config: ScoreConfig | None = None):
        self.p_yes = p_yes
        self.config = config or ScoreConfig(k=2, all_steps=True)
        self.scored: list[str] = []
        self.closed = False

    def score_solution(self, solution: Solution) -> SolutionResult:
        table = self.p_yes[solution.id]
        assert len(table) == len(solution.steps), f"script for {solution.id} has the wrong step count"
        self.scored.append(solution.id)
        steps, stopped = [], False
        for index, p_yes in enumerate(table, start=1):
            if stopped:
                steps.append(StepResult(index=index, score=None, p_yes=(), verdict="not scored"))
                continue
            score = sum(p_yes) / len(p_yes)
            verdict = "wrong" if score < self.config.threshold else "correct"
            steps.append(StepResult(index=index, score=score, p_yes=tuple(p_yes), verdict=verdict,
                                    critiques=tuple(f"critique {i}" for i in range(len(p_yes)))))
            stopped = verdict == "wrong" and not self.config.all_steps
        first_error = next((s.index for s in steps if s.verdict == "wrong"), None)
        scored = [s.score for s in steps if s.score is not None]
        return SolutionResult(id=solution.id, steps=tuple(steps), first_error_step=first_error,
                              solution_score=min(scored), config=self.run_metadata())

    def score_many(self, solutions: Iterable[Solution]) -> Iterator[SolutionResult]:
        for solution in solutions:
            yield self.score_solution(solution)

    def run_metadata(self) -> dict:
        return {**self.config.to_dict(), "model": "fake.gguf", "model_sha256": "0" * 64}

    def close(self) -> None:
        self.closed = True
