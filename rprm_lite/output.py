"""Rendering results: a plain-text table for people, JSON lines for programs, and the
append-only results file that makes long runs resumable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rprm_lite.config import RESULT_KEYS, refuse_other_settings
from rprm_lite.errors import InputError
from rprm_lite.jsonl import JsonlWriter, read_jsonl
from rprm_lite.results import UNREAD, SolutionResult

EXCERPT_WIDTH = 60


def excerpt(text: str, width: int = EXCERPT_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def format_table(result: SolutionResult, steps_text: tuple[str, ...], *, show_critiques: bool = False) -> str:
    adaptive = any(step.critiques_used is not None for step in result.steps)  # adaptive K: critiques drawn
    lines = [f"solution {result.id}: {verdict_line(result)}",
             f"{'step':>4}  {'score':>5}  {'verdict':<11} " + (f"{'critiques':>9}  " if adaptive else "") + "text"]
    for step, text in zip(result.steps, steps_text, strict=False):
        score = "-" if step.score is None else f"{step.score:.3f}"
        used = (f"{'-' if step.critiques_used is None else step.critiques_used:>9}  " if adaptive else "")
        lines.append(f"{step.index:>4}  {score:>5}  {step.verdict:<11} {used}{excerpt(text)}")
        if show_critiques:
            spans = step.calculated or ((),) * len(step.critiques)
            for number, (critique, p_yes, calculated) in enumerate(
                    zip(step.critiques, step.p_yes, spans, strict=False), start=1):
                shown = "not read" if p_yes is None else f"{p_yes:.3f}"
                lines.append(f"      critique {number} (P(Yes) = {shown}):")
                lines.extend("        " + line for line in marked(critique, calculated).splitlines())
    if show_critiques and any(any(spans) for step in result.steps for spans in step.calculated or ()):
        lines.append(f"      ({CALCULATED[0]}...{CALCULATED[1]}: written by the calculator)")
    return "\n".join(lines) + "\n"


CALCULATED = ("⟦", "⟧")  # around the text the calculator wrote into a critique


def marked(critique: str, spans: tuple[tuple[int, int], ...]) -> str:
    """The critique with each span the calculator wrote between the `CALCULATED` marks."""
    for start, end in reversed(spans):
        critique = f"{critique[:start]}{CALCULATED[0]}{critique[start:end]}{CALCULATED[1]}{critique[end:]}"
    return critique


def verdict_line(result: SolutionResult) -> str:
    unread = [str(step.index) for step in result.steps if step.verdict == UNREAD]
    if unread:  # a remote server's verdict held neither " Yes" nor " No"
        return f"could not read the verdict of step{'s' if len(unread) > 1 else ''} {', '.join(unread)}; no score"
    scored = sum(step.score is not None for step in result.steps)
    total = f"solution score {result.solution_score:.3f}" if result.solution_score is not None else ""
    unsure = [str(step.index) for step in result.steps if step.verdict == "uncertain"]
    if unsure:  # only with an uncertain band (--uncertain-band)
        doubt = f"not sure about step{'s' if len(unsure) > 1 else ''} {', '.join(unsure)}"
        if result.first_error_step is None:
            return f"no wrong step among {scored} scored; {doubt}; {total}"
        return f"first error at step {result.first_error_step} of {len(result.steps)}; {doubt}; {total}"
    if result.first_error_step is None:
        return f"all {scored} scored steps look correct; {total}"
    return f"first error at step {result.first_error_step} of {len(result.steps)}; {total}"


def to_json_line(result: SolutionResult, *, critiques: bool) -> str:
    # allow_nan=False: NaN and Infinity are not JSON (scores and settings are checked finite upstream)
    return json.dumps(result.to_dict(critiques=critiques), ensure_ascii=False, allow_nan=False) + "\n"


RESULT_START = '{"id": '  # how every result line begins (SolutionResult.to_dict puts the id first)
RESULT_FIELDS = ("id", "steps", "first_error_step", "solution_score", "config")


class ResultsFile:
    """JSONL results, appended and synced to disk as each solution finishes.

    Opening an existing file checks that it is a results file made with the same settings (each
    line's `config` block records them), reads the ids already there (so a rerun skips them) and cuts
    off a last line left half-written by a killed run. Anything else is refused, and left untouched.
    """

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        self.path = path
        self.done: set[str] = set()
        if path.exists():
            for number, record in read_jsonl(path, what="a JSONL results file", skip_torn_end=True):
                _check_result(path, number, record, settings)
                self.done.add(str(record["id"]))
        # opened now, before any model work, so an unwritable path fails at once
        self._writer: JsonlWriter | None = JsonlWriter(path, fsync=True, record_start=RESULT_START)

    def append(self, line: str) -> None:
        assert self._writer is not None, "append after close"
        self._writer.write_line(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _check_result(path: Path, number: int, record: dict[str, Any], settings: Mapping[str, Any]) -> None:
    missing = [name for name in RESULT_FIELDS if name not in record]
    if missing or not isinstance(record["config"], dict):
        raise InputError(f"{path} line {number}: not an rprm-lite result (it lacks "
                         f"{', '.join(missing) or 'a config object'}); it is left untouched: choose another --output")
    refuse_other_settings(record["config"], settings, holder=str(path), what="results", option="--output",
                          keys=RESULT_KEYS, where=f"line {number}: ")
