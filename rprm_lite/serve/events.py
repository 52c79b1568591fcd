"""The NDJSON stream of `POST /v1/score` with `"stream": true`: one JSON object per line.

    {"event": "step", "id": ..., "index": 1, "score": ..., "verdict": ..., "p_yes": [...], ...}  per scored step
    {"event": "result", "result": {...}}   the whole result, exactly the non-streaming answer
    {"event": "error", "error": {"type": ..., "message": ...}}   instead of the result, when scoring failed

A step event holds the step's entry of the final result (critiques only with show_critiques); steps not
scored after an early stop arrive as events too, with verdict "not scored".
"""

from __future__ import annotations

import json
from typing import Any

from rprm_lite.results import SolutionResult, StepResult

MEDIA_TYPE = "application/x-ndjson"


def _line(data: dict[str, Any]) -> bytes:
    # the same JSON options as `rprm-lite score --json` (output.to_json_line)
    return (json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def step_event(solution_id: str, step: StepResult, *, critiques: bool) -> bytes:
    return _line({"event": "step", "id": solution_id, **step.to_dict(critiques=critiques)})


def result_event(result: SolutionResult, *, critiques: bool) -> bytes:
    return _line({"event": "result", "result": result.to_dict(critiques=critiques)})


def error_event(body: dict[str, Any]) -> bytes:
    return _line({"event": "error", **body})
