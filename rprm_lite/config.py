"""`ScoreConfig`: every setting of a scoring run, shared by the Python API, the CLI and JSON output."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rprm_lite.drafts import draft_problem
from rprm_lite.errors import InputError
from rprm_lite.options import Options, Settings, is_number, option, shown
from rprm_lite.prompts import PROMPT_STYLES as PROMPT_STYLES  # the styles' home is the template package
from rprm_lite.prompts import PromptStyle
from rprm_lite.verdict_rule import Band

Aggregation = Literal["min", "product", "mean", "last"]
# single-pass: P(Yes) from the decode that writes the verdict phrase; released: the released evaluation's
# second pass on the cleaned critique text (rprm_lite/verdict.py)
VerdictMode = Literal["single-pass", "released"]
AdaptiveRule = Literal["beta", "betting", "window"]  # rprm_lite/adaptive.py
Switch = Literal["on", "off"]

AGGREGATIONS: tuple[str, ...] = typing.get_args(Aggregation)
VERDICT_MODES: tuple[str, ...] = typing.get_args(VerdictMode)
ADAPTIVE_RULES: tuple[str, ...] = typing.get_args(AdaptiveRule)
# written into outputs only when adaptive is on, so that outputs made without it stay byte-identical
ADAPTIVE_FIELDS: tuple[str, ...] = ("adaptive", "confidence", "wave", "adaptive_rule")
ADAPTIVE_ONLY = ADAPTIVE_FIELDS[1:]  # settings that mean nothing without adaptive


# -- the uncertain band (--uncertain-band LOW,HIGH; the verdicts it gives: rprm_lite/verdict_rule.py) --
def parse_band(text: str) -> Band:
    """`LOW,HIGH` as typed on the command line, e.g. `0.4,0.6`."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (float(part) for part in parts)
    except ValueError:
        raise InputError(f"--uncertain-band: expected LOW,HIGH like 0.4,0.6, got {text!r}") from None
    return (low, high)


def normalize_band(value: Any) -> Any:
    """A list (as JSON gives it) becomes a tuple, its whole numbers floats (so `[0, 1]` from a server
    request is written as the CLI's `0,1` is); anything else is left for `band_problems` to judge."""
    if not isinstance(value, (list, tuple)):
        return value
    return tuple(float(v) if type(v) is int and abs(v) <= 1 else v for v in value)


def band_problems(band: Any, threshold: float, *, check_threshold: bool = True) -> Iterator[str]:
    if band is None:
        return
    if (not isinstance(band, tuple) or len(band) != 2
            or not all(is_number(v) for v in band)):
        yield f"uncertain_band must be two finite numbers LOW,HIGH, got {shown(band, 60)}"
        return
    low, high = band
    if not 0 <= low <= high <= 1:
        yield f"uncertain_band must satisfy 0 <= LOW <= HIGH <= 1, got {low},{high}"
    elif check_threshold and not low <= threshold <= high:
        yield (f"uncertain_band {low},{high} must hold the threshold {threshold} (the band is the doubt "
               "around the decision point)")


@dataclass(frozen=True)
class ScoreConfig(Settings):
    """Sampling, decision and runtime settings. Defaults are the released R-PRM evaluation recipe.

    Each field with a help text is an option of `score`, `serve` and the benchmarks (rprm_lite/options.py);
    left out there, it takes the model file's `rprm.*` default, then the one below.
    """

    # sampling (paper: K=10, temperature 0.95, top_p 0.95, 4096 new tokens)
    k: int = option(10, help="Critiques per step.")
    temperature: float = option(0.95, help="Sampling temperature; 0 is greedy.")
    top_p: float = option(0.95, help="Nucleus sampling.")
    max_tokens: int = option(4096, help="Max tokens per critique.")
    seed: int = option(0, help="Seed for every sampled critique.")
    prompt_style: PromptStyle = option("r-prm-eval", help="r-prm-eval (released evaluation prompt) or chatml.")
    verdict: VerdictMode = option("single-pass", help="How P(Yes) is read: single-pass (in the decode that writes "
                                  "the verdict phrase) or released (the released evaluation's second pass over "
                                  "the cleaned critique).")
    calculator: Switch = option("off", help="on: the runtime writes the exact result after a critique's 'A op B =' "
                                "and whether 'A vs B,' are the same (rprm_lite/calculator.py); the model file's "
                                "rprm.calculator, else off.")
    draft: str = option("off", help="Prompt-lookup drafts: per critique and decode call, up to N tokens guessed from "
                        "the prompt and the critique so far, kept where the critique's sampler picks them "
                        "(rprm_lite/drafts.py): off, auto or N.", metavar="off|auto|N")
    # decision
    threshold: float = option(0.5, help="A step scoring below this is wrong.")
    aggregation: Aggregation = option("min", help="Solution score: min, product, mean or last.")
    all_steps: bool = option(False, help="Score every step, not only up to the first error.")
    # runtime
    n_gpu_layers: int = option(0, help="Layers to offload to CUDA/Metal; -1 for all.")
    threads: int | None = option(None, help="CPU threads.", shown_default="all cores, or $RPRM_THREADS")
    n_ctx: int | None = option(None, help="KV cache cap in tokens (prompt + K critiques).")
    kv_reuse: bool = True
    # adaptive K (rprm_lite/adaptive.py): critiques in waves of `wave`, up to k, until the rule is
    # `confidence` sure of the verdict; off by default (the released recipe is a fixed K). The defaults
    # are the study's pick (README, "Adaptive K"): on R-PRM-7B's PRMBench votes, 3.9x fewer critiques
    # for 0.1 PRMScore point
    adaptive: bool = option(False, help="Adaptive K: draw critiques in waves, up to --k, and stop a step once its "
                            "verdict is settled with --confidence.")
    confidence: float = option(0.8, help="Adaptive K: how sure the stopping rule must be, in (0.5, 1]; 1 never "
                               "stops early.")
    wave: int = option(2, help="Adaptive K: critiques decoded together per wave.")
    adaptive_rule: AdaptiveRule = option("beta", help="Adaptive K: beta (posterior on the mean), betting "
                                         "(confidence sequence) or window (last critiques agree).")
    # off by default: verdict `uncertain` inside a band (rprm_lite/verdict_rule.py), and a calibration file
    # made by `rprm-lite calibrate` for this model (its threshold and score map; rprm_lite/calibration.py)
    uncertain_band: tuple[float, float] | None = option(
        None, help="Verdict 'uncertain' for a score in [LOW, HIGH), which must hold the threshold; wrong below LOW.",
        metavar="LOW,HIGH", cli_type=str, parse=parse_band)
    calibration: str | None = option(
        None, help="A calibration file from `rprm-lite calibrate` for this model: its threshold, and its map for "
        "the scores.", cli_type=Path, parse=str)

    def normalize(self) -> None:
        object.__setattr__(self, "uncertain_band", normalize_band(self.uncertain_band))
        if isinstance(self.draft, int) and not isinstance(self.draft, bool):
            object.__setattr__(self, "draft", str(self.draft))
        if isinstance(self.calibration, os.PathLike):
            object.__setattr__(self, "calibration", os.fspath(self.calibration))

    def problems(self) -> Iterator[str]:
        yield from self.at_least(k=1)
        if self.k > MAX_K:
            yield f"k must be at most {MAX_K} (llama.cpp's limit on parallel sequences), got {shown(self.k)}"
        if self.temperature < 0:
            yield f"temperature must be >= 0, got {self.temperature}"
        if not 0 < self.top_p <= 1:
            yield f"top_p must be in (0, 1], got {self.top_p}"
        yield from self.at_least(max_tokens=1)
        if self.max_tokens > INT32_MAX:
            yield f"max_tokens must be at most {INT32_MAX}, got {shown(self.max_tokens)}"
        if not 0 <= self.threshold <= 1:
            yield f"threshold must be in [0, 1], got {self.threshold}"
        if self.threads is not None:
            yield from self.at_least(threads=1)
        if self.threads is not None and self.threads > max_threads():
            yield (f"threads must be at most {max_threads()} ({THREADS_PER_CORE} per CPU core of this machine), "
                   f"got {self.threads}")
        if self.n_ctx is not None and not 64 <= self.n_ctx <= INT32_MAX:
            yield f"n_ctx must be at least 64 and at most {INT32_MAX}, got {self.n_ctx}"
        if not -1 <= self.n_gpu_layers <= INT32_MAX:
            yield f"n_gpu_layers must be -1 (all) or between 0 and {INT32_MAX}, got {self.n_gpu_layers}"
        if not 0 <= self.seed <= UINT64_MAX:
            yield f"seed must be between 0 and {UINT64_MAX}, got {shown(self.seed)}"
        if not 0.5 < self.confidence <= 1:
            yield f"confidence must be in (0.5, 1] (1 never stops early), got {self.confidence}"
        if not 1 <= self.wave <= MAX_K:
            yield f"wave must be between 1 and {MAX_K} critiques, got {self.wave}"
        yield from self._adaptive_only_problems()
        if (problem := draft_problem(self.draft)) is not None:
            yield problem
        # with a calibration file its threshold replaces this one; the band is checked against it then
        yield from band_problems(self.uncertain_band, self.threshold, check_threshold=self.calibration is None)
        if self.calibration is not None and not isinstance(self.calibration, str):
            yield f"calibration must be a file path, got {self.calibration!r}"

    def _adaptive_only_problems(self) -> Iterator[str]:
        """Adaptive K's own settings away from their defaults while adaptive K is off would be ignored
        without a word (the value is all a config holds: a setting given at its default is not seen)."""
        if self.adaptive:
            return
        changed = [f"{name} {getattr(self, name)}" for name, default in adaptive_defaults().items()
                   if getattr(self, name) != default]
        if changed:
            one = len(changed) == 1
            yield (f"{', '.join(changed)} only {'applies' if one else 'apply'} with adaptive K: turn it on "
                   f"(--adaptive) or leave {'it' if one else 'them'} out")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.adaptive:
            for name in ADAPTIVE_FIELDS:
                del data[name]
        for name, off in OMITTED_WHEN_OFF.items():  # outputs made with these off stay as they were before
            if data[name] == off:
                del data[name]
        if "uncertain_band" in data:
            data["uncertain_band"] = list(data["uncertain_band"])  # as JSON reads it back, so resume compares
        return data


def sampled_when_several(config: ScoreConfig, given: dict[str, Any]) -> ScoreConfig:
    """A greedy default (a model file's rprm.temperature 0, as the demo's) is meant for one critique: K greedy
    critiques are the same critique K times. When the options ask for several (k > 1 or adaptive K) and do not
    give a temperature, they are sampled at the released recipe's temperature instead."""
    several = given.get("k", 1) > 1 or given.get("adaptive", False)
    if config.temperature == 0 and several and "temperature" not in given:
        return config.replace(temperature=SAMPLED_TEMPERATURE)
    return config


def adaptive_defaults() -> dict[str, Any]:
    """The defaults of the settings that mean something only with adaptive K."""
    return {spec.name: spec.default for spec in dataclasses.fields(ScoreConfig) if spec.name in ADAPTIVE_ONLY}


SAMPLED_TEMPERATURE = next(spec.default for spec in dataclasses.fields(ScoreConfig) if spec.name == "temperature")

# The score options of the commands (`score`, `serve`, the benchmarks, `rerank`): given or not given
SCORE_OPTIONS = Options(ScoreConfig, given=True)


OMITTED_WHEN_OFF = {"uncertain_band": None, "calibration": None, "calculator": "off", "draft": "off"}


# Settings that change what a result holds (with the model file's and the prompt template's hashes):
# an output made with other values must not be resumed or mixed. The benchmarks' run.json and the
# results file of `rprm-lite score` (which also records aggregation and n_ctx) are checked with these.
RESUME_KEYS = ("k", "temperature", "top_p", "max_tokens", "seed", "prompt_style", "verdict", "all_steps",
               "model_sha256", "backend", "server", "server_kind", "server_model", "vocab_sha256",  # remote only
               *ADAPTIVE_FIELDS, "uncertain_band", "lora", "calculator", "draft")
RESULT_KEYS = (*RESUME_KEYS, "aggregation", "n_ctx", "prompt_sha256", "calibration_sha256")
# Settings added after outputs were first written: an output without the key was made with this value.
ADDED_SETTINGS = {"verdict": "single-pass", "backend": "local", "server": None, "server_kind": None,
                  "server_model": None, "vocab_sha256": None,
                  "adaptive": False, "uncertain_band": None, "calibration_sha256": None, "lora": None,
                  "calculator": "off", "draft": "off"}


def changed_settings(before: Mapping[str, Any], now: Mapping[str, Any],
                     keys: Sequence[str] = RESUME_KEYS) -> list[str]:
    """The settings in which `now` differs from `before`, as "key: old before, new now" lines."""
    keys = [key for key in keys if key in now or key in ADDED_SETTINGS]
    if not now.get("all_steps", True) or now.get("adaptive"):
        keys.append("threshold")  # with early stop, the threshold decides which steps were scored
        # (with adaptive K, also how many critiques each step drew)
    return [f"{key}: {_value(before, key)!r} before, {_value(now, key)!r} now" for key in keys
            if _value(before, key) != _value(now, key)]


def refuse_other_settings(before: Mapping[str, Any], now: Mapping[str, Any], *, holder: str, what: str,
                          option: str, keys: Sequence[str] = RESUME_KEYS, where: str = "",
                          also: Sequence[str] = ()) -> None:
    """The one resume guard: refuse to add to `holder` (a results file, a predictions folder) what it
    holds (`what`) made with other settings; `also` names differences found besides the settings."""
    changed = [*also, *changed_settings(before, now, keys)]
    if changed:
        raise InputError(f"{holder} holds {what} made with other settings ({where}{'; '.join(changed)}); "
                         f"use another {option}, or the same settings to resume")


def _value(settings: Mapping[str, Any], key: str) -> Any:
    return settings.get(key, ADDED_SETTINGS.get(key))


# Bounds that keep llama.cpp in its safe range: a context holds at most 255 parallel sequences
# besides the prompt's, its counters are 32-bit, and threads far beyond the cores only thrash.
MAX_K = 255
INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1  # the widest seed a sampler takes
THREADS_PER_CORE = 4


def max_threads() -> int:
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def default_threads() -> int:
    """The threads of an engine given none: $RPRM_THREADS where it is set (a process that shares the cores with
    others, such as one test worker of several), else every core."""
    value = os.environ.get("RPRM_THREADS", "").strip()
    if not value:
        return max(1, os.cpu_count() or 1)
    if not value.isdecimal() or not 1 <= int(value) <= max_threads():
        raise InputError(f"RPRM_THREADS must be a whole number from 1 to {max_threads()}, got {value!r}")
    return int(value)
