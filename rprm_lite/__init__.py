"""rprm-lite: step-by-step verdicts on math solutions with a generative process reward model (R-PRM).

The runtime is light: it needs llama.cpp (llama-cpp-python), numpy and gguf, never torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rprm_lite.config import ScoreConfig
from rprm_lite.errors import ContextOverflowError, InputError, ModelFileError, RprmError
from rprm_lite.results import SolutionResult, StepResult
from rprm_lite.solution import Solution, read_solutions
from rprm_lite.version import __version__

if TYPE_CHECKING:
    from rprm_lite.scoring import Scorer
    from rprm_lite.solve import SolveConfig, Solver

__all__ = [
    "__version__", "ContextOverflowError", "InputError", "ModelFileError", "RprmError", "ScoreConfig", "Scorer",
    "Solution", "SolutionResult", "StepResult", "read_solutions", "SolveConfig", "Solver",
]


def __getattr__(name: str) -> Any:
    # Scorer pulls in llama.cpp; load it on first use so `import rprm_lite` stays instant.
    if name == "Scorer":
        from rprm_lite.scoring import Scorer

        return Scorer
    if name in ("Solver", "SolveConfig"):  # `rprm-lite solve` from Python (rprm_lite/solve.py)
        from rprm_lite import solve

        return getattr(solve, name)
    raise AttributeError(f"module 'rprm_lite' has no attribute {name!r}")
