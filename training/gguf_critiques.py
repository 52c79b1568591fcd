"""K critiques per step from a GGUF model through the rprm-lite runtime (one shared prompt, K streams), on the
local engine or, with a remote backend, on OpenAI-compatible servers (`rprm_lite/remote/`).

Both `data seed` with a GGUF teacher and `data pairs` with a GGUF model sample this way: a solution is scored
up to its last step that needs critiques (with every step scored, no early stop), and the critiques of the
steps asked for are read off the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rprm_lite.config import ScoreConfig
from rprm_lite.results import StepResult
from rprm_lite.solution import Solution

Ask = tuple[Solution, Sequence[int]]  # a solution and the 0-based indices of the steps to critique


class GGUFCritiques:
    def __init__(self, model_path: str, *, k: int, temperature: float, top_p: float, max_tokens: int, seed: int,
                 prompt_style: str, n_gpu_layers: int = 0, remote: Any = None) -> None:
        """`remote`: a `RemoteConfig` to sample on servers (the GGUF file then gives the vocabulary)."""
        from rprm_lite.job import make_scorer

        config = ScoreConfig(k=k, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                             prompt_style=prompt_style, all_steps=True, n_gpu_layers=n_gpu_layers)
        self.scorer = make_scorer(model_path, config.to_dict(), remote=remote, vocab=model_path)
        self.name = (self.scorer.model_info.path.name if remote is None
                     else self.scorer.run_settings()["server_model"])

    def steps(self, solution: Solution, indices: Sequence[int]) -> dict[int, StepResult]:
        """The scored steps at `indices`; the steps after the last of them are not scored."""
        return _picked(self.scorer.score_solution(_head(solution, indices)), indices)

    def steps_many(self, asks: Sequence[Ask]) -> Iterator[dict[int, StepResult]]:
        """`steps` of each ask in turn; a remote backend keeps several solutions in flight."""
        many = getattr(self.scorer, "score_many", None)
        if many is None:
            yield from (self.steps(solution, indices) for solution, indices in asks)
            return
        results = many([_head(solution, indices) for solution, indices in asks])
        for (_, indices), result in zip(asks, results, strict=True):
            yield _picked(result, indices)

    def close(self) -> None:
        self.scorer.close()


def _head(solution: Solution, indices: Sequence[int]) -> Solution:
    return Solution(solution.question, solution.steps[:max(indices) + 1], solution.id)


def _picked(result: Any, indices: Sequence[int]) -> dict[int, StepResult]:
    return {index: result.steps[index] for index in indices}
