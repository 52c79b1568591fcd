"""`ScoreConfig`: every setting of a scoring run, shared by the Python API, the CLI and JSON output."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rprm_lite.errors import InputError
from rprm_lite.uncertain import band_problems, normalize_band

PromptStyle = Literal["r-prm-eval", "chatml"]
Aggregation = Literal["min", "product", "mean", "last"]
VerdictMode = Literal["single-pass", "released"]

PROMPT_STYLES: tuple[str, ...] = ("r-prm-eval", "chatml")
AGGREGATIONS: tuple[str, ...] = ("min", "product", "mean", "last")
# single-pass: P(Yes) from the decode that writes the verdict phrase; released: the released evaluation's
# second pass on the cleaned critique text (rprm_lite/verdict.py)
VERDICT_MODES: tuple[str, ...] = ("single-pass", "released")
ADAPTIVE_RULES: tuple[str, ...] = ("beta", "betting", "window")  # rprm_lite/adaptive.py
# written into outputs only when adaptive is on, so that outputs made without it stay byte-identical
ADAPTIVE_FIELDS: tuple[str, ...] = ("adaptive", "confidence", "wave", "adaptive_rule")


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
    verdict: VerdictMode = "single-pass"  # how P(Yes) is read from a critique
    # decision
    threshold: float = 0.5
    aggregation: Aggregation = "min"
    all_steps: bool = False
    # runtime
    n_gpu_layers: int = 0
    threads: int | None = None
    n_ctx: int | None = None
    kv_reuse: bool = True
    # adaptive K (rprm_lite/adaptive.py): critiques in waves of `wave`, up to k, until the rule is
    # `confidence` sure of the verdict; off by default (the released recipe is a fixed K). The defaults
    # are the study's pick (README, "Adaptive K"): on R-PRM-7B's PRMBench votes, 3.9x fewer critiques
    # for 0.1 PRMScore point
    adaptive: bool = False
    confidence: float = 0.8
    wave: int = 2
    adaptive_rule: str = "beta"
    # off by default: verdict `uncertain` inside a band (rprm_lite/uncertain.py), and a calibration file
    # made by `rprm-lite calibrate` for this model (its threshold and score map; rprm_lite/calibration.py)
    uncertain_band: tuple[float, float] | None = None
    calibration: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "uncertain_band", normalize_band(self.uncertain_band))
        if isinstance(self.calibration, os.PathLike):
            object.__setattr__(self, "calibration", os.fspath(self.calibration))
        problems = list(_problems(self))
        if problems:
            raise InputError("invalid settings: " + "; ".join(problems))

    def replace(self, **changes: Any) -> ScoreConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.adaptive:
            for name in ADAPTIVE_FIELDS:
                del data[name]
        for name in OMITTED_WHEN_OFF:  # outputs made with these off stay as they were before they existed
            if data[name] is None:
                del data[name]
        if "uncertain_band" in data:
            data["uncertain_band"] = list(data["uncertain_band"])  # as JSON reads it back, so resume compares
        return data


OMITTED_WHEN_OFF = ("uncertain_band", "calibration")


# Settings that change what a result holds (with the model file's and the prompt template's hashes):
# an output made with other values must not be resumed or mixed. The benchmarks' run.json and the
# results file of `rprm-lite score` (which also records aggregation and n_ctx) are checked with these.
RESUME_KEYS = ("k", "temperature", "top_p", "max_tokens", "seed", "prompt_style", "verdict", "all_steps",
               "model_sha256", "backend", "server_model", "vocab_sha256",  # these three: remote runs only
               *ADAPTIVE_FIELDS, "uncertain_band")
RESULT_KEYS = (*RESUME_KEYS, "aggregation", "n_ctx", "prompt_sha256", "calibration_sha256")
# Settings added after outputs were first written: an output without the key was made with this value.
ADDED_SETTINGS = {"verdict": "single-pass", "backend": "local", "server_model": None, "vocab_sha256": None,
                  "adaptive": False, "uncertain_band": None, "calibration_sha256": None}


def changed_settings(before: Mapping[str, Any], now: Mapping[str, Any],
                     keys: Sequence[str] = RESUME_KEYS) -> list[str]:
    """The settings in which `now` differs from `before`, as "key: old before, new now" lines."""
    keys = [key for key in keys if key in now or key in ADDED_SETTINGS]
    if not now.get("all_steps", True) or now.get("adaptive"):
        keys.append("threshold")  # with early stop, the threshold decides which steps were scored
        # (with adaptive K, also how many critiques each step drew)
    return [f"{key}: {_value(before, key)!r} before, {_value(now, key)!r} now" for key in keys
            if _value(before, key) != _value(now, key)]


def _value(settings: Mapping[str, Any], key: str) -> Any:
    return settings.get(key, ADDED_SETTINGS.get(key))


# Bounds that keep llama.cpp in its safe range: a context holds at most 255 parallel sequences
# besides the prompt's, its counters are 32-bit, and threads far beyond the cores only thrash.
MAX_K = 255
INT32_MAX = 2**31 - 1
THREADS_PER_CORE = 4

INT_FIELDS = ("k", "max_tokens", "seed", "n_gpu_layers", "threads", "n_ctx", "wave")
FLOAT_FIELDS = ("temperature", "top_p", "threshold", "confidence")
BOOL_FIELDS = ("all_steps", "kv_reuse", "adaptive")
OPTIONAL_FIELDS = ("threads", "n_ctx")


def max_threads() -> int:
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def _problems(cfg: ScoreConfig):
    """Type problems first (a range check on a wrong type would be meaningless), then ranges."""
    type_problems = list(_type_problems(cfg))
    yield from type_problems
    if not type_problems:
        yield from _range_problems(cfg)


def _type_problems(cfg: ScoreConfig):
    for name in (*INT_FIELDS, *FLOAT_FIELDS, *BOOL_FIELDS):
        value = getattr(cfg, name)
        if not (value is None and name in OPTIONAL_FIELDS) and not _has_type(name, value):
            yield f"{name} must be {_expected(name)}, got {value!r}"
    for name, choices in (("prompt_style", PROMPT_STYLES), ("aggregation", AGGREGATIONS),
                          ("verdict", VERDICT_MODES), ("adaptive_rule", ADAPTIVE_RULES)):
        if getattr(cfg, name) not in choices:
            yield f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}"


def _has_type(name: str, value: Any) -> bool:
    if name in BOOL_FIELDS:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name in INT_FIELDS:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)  # NaN and inf compare false to every bound


def _expected(name: str) -> str:
    if name in BOOL_FIELDS:
        return "true or false"
    return "an integer" if name in INT_FIELDS else "a finite number"


def _range_problems(cfg: ScoreConfig):
    if cfg.k < 1:
        yield f"k must be at least 1, got {cfg.k}"
    if cfg.k > MAX_K:
        yield f"k must be at most {MAX_K} (llama.cpp's limit on parallel sequences), got {cfg.k}"
    if cfg.temperature < 0:
        yield f"temperature must be >= 0, got {cfg.temperature}"
    if not 0 < cfg.top_p <= 1:
        yield f"top_p must be in (0, 1], got {cfg.top_p}"
    if cfg.max_tokens < 1:
        yield f"max_tokens must be at least 1, got {cfg.max_tokens}"
    if cfg.max_tokens > INT32_MAX:
        yield f"max_tokens must be at most {INT32_MAX}, got {cfg.max_tokens}"
    if not 0 <= cfg.threshold <= 1:
        yield f"threshold must be in [0, 1], got {cfg.threshold}"
    if cfg.threads is not None and cfg.threads < 1:
        yield f"threads must be at least 1, got {cfg.threads}"
    if cfg.threads is not None and cfg.threads > max_threads():
        yield (f"threads must be at most {max_threads()} ({THREADS_PER_CORE} per CPU core of this machine), "
               f"got {cfg.threads}")
    if cfg.n_ctx is not None and not 64 <= cfg.n_ctx <= INT32_MAX:
        yield f"n_ctx must be at least 64 and at most {INT32_MAX}, got {cfg.n_ctx}"
    if not -1 <= cfg.n_gpu_layers <= INT32_MAX:
        yield f"n_gpu_layers must be -1 (all) or between 0 and {INT32_MAX}, got {cfg.n_gpu_layers}"
    if cfg.seed < 0:
        yield f"seed must be >= 0, got {cfg.seed}"
    if not 0.5 < cfg.confidence <= 1:
        yield f"confidence must be in (0.5, 1] (1 never stops early), got {cfg.confidence}"
    if not 1 <= cfg.wave <= MAX_K:
        yield f"wave must be between 1 and {MAX_K} critiques, got {cfg.wave}"
    # with a calibration file its threshold replaces this one; the band is checked against it then
    yield from band_problems(cfg.uncertain_band, cfg.threshold, check_threshold=cfg.calibration is None)
    if cfg.calibration is not None and not isinstance(cfg.calibration, str):
        yield f"calibration must be a file path, got {cfg.calibration!r}"
