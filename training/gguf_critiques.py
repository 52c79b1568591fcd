"""K critiques per step from a local GGUF model, through the rprm-lite runtime (one shared prompt, K streams).

Both `data seed` with a GGUF teacher and `data pairs` with a GGUF model sample this way: a solution is scored
up to its last step that needs critiques (with every step scored, no early stop), and the critiques of the
steps asked for are read off the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from rprm_lite.config import ScoreConfig
from rprm_lite.results import StepResult
from rprm_lite.solution import Solution


class GGUFCritiques:
    def __init__(self, model_path: str, *, k: int, temperature: float, top_p: float, max_tokens: int, seed: int,
                 prompt_style: str, n_gpu_layers: int = 0) -> None:
        from rprm_lite.scoring import Scorer

        self.scorer = Scorer(model_path, config=ScoreConfig(
            k=k, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, prompt_style=prompt_style,
            all_steps=True, n_gpu_layers=n_gpu_layers))
        self.name = self.scorer.model_info.path.name

    def steps(self, solution: Solution, indices: Sequence[int]) -> dict[int, StepResult]:
        """The scored steps at `indices` (0-based); the steps after the last of them are not scored."""
        head = Solution(solution.question, solution.steps[:max(indices) + 1], solution.id)
        result = self.scorer.score_solution(head)
        return {index: result.steps[index] for index in indices}

    def close(self) -> None:
        self.scorer.close()
