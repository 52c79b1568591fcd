"""`ScoreConfig`: every setting of a scoring run, shared by the Python API, the CLI and JSON output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from rprm_lite.errors import InputError

PromptStyle = Literal["r-prm-eval", "chatml"]
Aggregation = Literal["min", "product", "mean", "last"]

PROMPT_STYLES: tuple[str, ...] = ("r-prm-eval", "chatml")
AGGREGATIONS: tuple[str, ...] = ("min", "product", "mean", "last")


@dataclass(frozen=True)
class ScoreConfig:
    """Sampling, decision and runtime settings. Defaults are the released R-PRM evaluation recipe."""

    # sampling (paper: K=10, temperature 0.95, top_p 0.95, 4096 new tokens)
    k: int = 10
    temperature: float = 0.95
    top_p: float = 0.95
    max_tokens: int = 4096
    seed: int = 0
    prompt_style: PromptStyle = "r-prm-eval"
    # decision
    threshold: float = 0.5
    aggregation: Aggregation = "min"
    all_steps: bool = False
    # runtime
    n_gpu_layers: int = 0
    threads: int | None = None
    n_ctx: int | None = None
    kv_reuse: bool = True

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise InputError("invalid settings: " + "; ".join(problems))

    def replace(self, **changes: Any) -> ScoreConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _problems(cfg: ScoreConfig):
    if cfg.k < 1:
        yield f"k must be at least 1, got {cfg.k}"
    if cfg.temperature < 0:
        yield f"temperature must be >= 0, got {cfg.temperature}"
    if not 0 < cfg.top_p <= 1:
        yield f"top_p must be in (0, 1], got {cfg.top_p}"
    if cfg.max_tokens < 1:
        yield f"max_tokens must be at least 1, got {cfg.max_tokens}"
    if not 0 <= cfg.threshold <= 1:
        yield f"threshold must be in [0, 1], got {cfg.threshold}"
    if cfg.prompt_style not in PROMPT_STYLES:
        yield f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {cfg.prompt_style!r}"
    if cfg.aggregation not in AGGREGATIONS:
        yield f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {cfg.aggregation!r}"
    if cfg.threads is not None and cfg.threads < 1:
        yield f"threads must be at least 1, got {cfg.threads}"
    if cfg.n_ctx is not None and cfg.n_ctx < 64:
        yield f"n_ctx must be at least 64, got {cfg.n_ctx}"
    if cfg.seed < 0:
        yield f"seed must be >= 0, got {cfg.seed}"
