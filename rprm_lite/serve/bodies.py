"""Request bodies to library values, through the same validation as the CLI, and errors to HTTP answers.

A score body is a solution object as `rprm-lite score` reads it from a JSON file (so the same fields, the
same messages and the same `extra` fields in the answer), plus `options` and `stream`. Options are the
per-request subset of `ScoreConfig` (settings fixed at load time, like threads, stay the server's) and
`show_critiques`; they go on top of the server's defaults and are checked by `ScoreConfig` itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rprm_lite.calibration import Calibration, check_config
from rprm_lite.config import (
    ADAPTIVE_RULES,
    AGGREGATIONS,
    MAX_K,
    VERDICT_MODES,
    ScoreConfig,
    adaptive_defaults,
    sampled_when_several,
)
from rprm_lite.errors import ContextOverflowError, InputError, RprmError, ScoringCancelled
from rprm_lite.jsonl import loads
from rprm_lite.options import shown
from rprm_lite.prompts import PROMPT_STYLES
from rprm_lite.serve.settings import ServeConfig
from rprm_lite.serve.worker import OverTime
from rprm_lite.solution import Solution, solution_from_dict

REQUEST_OPTIONS = ("k", "temperature", "top_p", "threshold", "max_tokens", "seed", "all_steps", "prompt_style",
                   "verdict", "aggregation", "adaptive", "confidence", "wave", "adaptive_rule", "uncertain_band",
                   "calculator", "show_critiques")
REQUEST_KEYS = ("options", "stream")  # besides the solution's own fields
WHERE = "request body"


class ApiError(Exception):
    """An answer other than 200: status, a short machine-readable type and a one-line message."""

    def __init__(self, status: int, type: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type, message, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message}}


@dataclass(frozen=True)
class ScoreRequest:
    solution: Solution
    config: ScoreConfig
    show_critiques: bool
    stream: bool


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = loads(raw, where=WHERE)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"{WHERE}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                                            f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"{WHERE}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except InputError as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_input", f"{WHERE}: expected a JSON object, got {type(body).__name__}")
    return body


def score_request(body: dict[str, Any], defaults: ScoreConfig, *, server: ServeConfig,
                  calibration: Calibration | None = None, show_critiques: bool = False) -> ScoreRequest:
    """`server` holds the limits (resolved by `ServeConfig.with_limits`); `show_critiques` is the default of the
    request option (the server's --show-critiques); `calibration` is the server's (--calibration): it sets the
    threshold, and each request's settings must be those it was fit with."""
    solution = _solution(body, max_steps=server.max_steps)
    options = body.get("options", {})
    if not isinstance(options, dict):
        raise ApiError(422, "invalid_input", f"{WHERE}: 'options' must be an object, got {_kind(options)}")
    unknown = sorted(set(options) - set(REQUEST_OPTIONS))
    if unknown:
        raise ApiError(422, "invalid_input", f"{WHERE}: unknown option {shown(unknown[0])}; the options are "
                                             f"{', '.join(REQUEST_OPTIONS)}")
    settings = {name: value for name, value in options.items() if name != "show_critiques"}
    if settings.get("adaptive") is False:  # the server's adaptive settings go with its adaptive default
        settings = {**adaptive_defaults(), **settings}
    if calibration is not None and "threshold" in settings:
        raise ApiError(422, "invalid_input", f"{WHERE}: options: threshold cannot be set on this server: its "
                                             "calibration file (--calibration) sets the threshold")
    try:
        config = sampled_when_several(defaults.replace(**settings), settings)
        if calibration is not None:
            check_config(calibration, config)
    except InputError as exc:
        raise ApiError(422, "invalid_input", str(exc)) from None
    _check_limits(config, server)
    return ScoreRequest(solution=solution, config=config, show_critiques=_flag(
                            options, "show_critiques", "options: show_critiques", show_critiques),
                        stream=_flag(body, "stream", "stream"))


def _check_limits(config: ScoreConfig, server: ServeConfig) -> None:
    for name, limit, option in (("k", server.max_request_k, "--max-request-k"),
                                ("max_tokens", server.max_request_tokens, "--max-request-tokens")):
        if limit is not None and getattr(config, name) > limit:
            raise ApiError(422, "over_limit", f"{WHERE}: options: {name} {getattr(config, name)} is above this "
                                              f"server's limit of {limit} ({option}); ask for at most {limit}")


def prompt_request(body: dict[str, Any], default_style: str, *, max_steps: int) -> tuple[Solution, int, str]:
    """A prompt body: a solution, `step` (1-based) and an optional `prompt_style`."""
    step, style = body.get("step"), body.get("prompt_style", default_style)
    solution = _solution({k: v for k, v in body.items() if k not in ("step", "prompt_style")}, max_steps=max_steps)
    if isinstance(step, bool) or not isinstance(step, int):
        raise ApiError(422, "invalid_input", f"{WHERE}: 'step' must be an integer (1-based), got {_kind(step)}")
    if style not in PROMPT_STYLES:
        raise ApiError(422, "invalid_input", f"{WHERE}: 'prompt_style' must be one of {', '.join(PROMPT_STYLES)}, "
                                             f"got {style!r}")
    return solution, step, style


def _solution(body: dict[str, Any], *, max_steps: int) -> Solution:
    steps = body.get("steps")
    if isinstance(steps, list) and len(steps) > max_steps:
        raise ApiError(413, "too_many_steps", f"{WHERE}: {len(steps):,} steps; this server scores at most "
                                              f"{max_steps:,} per solution (--max-steps)")
    try:
        return solution_from_dict({k: v for k, v in body.items() if k not in REQUEST_KEYS}, where=WHERE)
    except InputError as exc:
        raise ApiError(422, "invalid_input", str(exc)) from None


def _flag(mapping: dict[str, Any], name: str, what: str, default: bool = False) -> bool:
    value = mapping.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(422, "invalid_input", f"{WHERE}: {what} must be true or false, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=False)  # null, true, 3, "text"
    return text if len(text) <= 40 else text[:37] + "..."


def scoring_error(exc: RprmError) -> ApiError:
    """What a failed scoring call answers (the worker hands these over)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return ApiError(413, "context_overflow", str(exc))
    if isinstance(exc, InputError):
        return ApiError(422, "invalid_input", str(exc))
    if isinstance(exc, ScoringCancelled):
        return ApiError(503, "cancelled", str(exc))
    if isinstance(exc, OverTime):
        return ApiError(503, "time_limit", str(exc))
    return ApiError(500, "scoring_failed", str(exc))


# The documented shape of the bodies (the validation above is the one the CLI uses; this is for clients).
OPTIONS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "description": "Per-request settings over the server's defaults (see GET /v1/info).",
    "properties": {
        "k": {"type": "integer", "minimum": 1, "maximum": 255},
        "temperature": {"type": "number", "minimum": 0},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "seed": {"type": "integer", "minimum": 0},
        "all_steps": {"type": "boolean"},
        "prompt_style": {"type": "string", "enum": list(PROMPT_STYLES)},
        "verdict": {"type": "string", "enum": list(VERDICT_MODES)},
        "aggregation": {"type": "string", "enum": list(AGGREGATIONS)},
        "adaptive": {"type": "boolean", "description": "Adaptive K: critiques in waves, up to k, until settled."},
        "confidence": {"type": "number", "exclusiveMinimum": 0.5, "maximum": 1},
        "wave": {"type": "integer", "minimum": 1, "maximum": MAX_K},
        "adaptive_rule": {"type": "string", "enum": list(ADAPTIVE_RULES)},
        "uncertain_band": {"type": ["array", "null"], "items": {"type": "number", "minimum": 0, "maximum": 1},
                           "minItems": 2, "maxItems": 2,
                           "description": "[low, high], holding the threshold: verdict 'uncertain' for a score "
                                          "in [low, high); null for none."},
        "calculator": {"type": "string", "enum": ["on", "off"],
                       "description": "on: the runtime writes the exact result after a critique's 'A op B =' and "
                                      "whether 'A vs B,' are the same; default: the model file's."},
        "show_critiques": {"type": "boolean"},
    },
}
SOLUTION_PROPERTIES = {
    "question": {"type": "string", "minLength": 1},
    "steps": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    "id": {"type": ["string", "integer", "null"], "description": "Echoed in the result; default: a content hash."},
}
SCORE_BODY_SCHEMA = {
    "type": "object", "required": ["question", "steps"],
    "description": "A solution as `rprm-lite score` reads it; other fields are echoed in the result's `extra`.",
    "properties": {**SOLUTION_PROPERTIES, "options": OPTIONS_SCHEMA,
                   "stream": {"type": "boolean", "description": "Answer as NDJSON events, one per scored step."}},
}
PROMPT_BODY_SCHEMA = {
    "type": "object", "required": ["question", "steps", "step"],
    "properties": {**SOLUTION_PROPERTIES, "step": {"type": "integer", "minimum": 1},
                   "prompt_style": {"type": "string", "enum": list(PROMPT_STYLES)}},
}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["type", "message"],
                             "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}},
}
