"""Rendering results: a plain-text table for people, JSON lines for programs, and the
append-only results file that makes long runs resumable."""

from __future__ import annotations

import json
from pathlib import Path

from rprm_lite.errors import InputError
from rprm_lite.jsonl import JsonlWriter, read_jsonl
from rprm_lite.results import SolutionResult

EXCERPT_WIDTH = 60


def excerpt(text: str, width: int = EXCERPT_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def format_table(result: SolutionResult, steps_text: tuple[str, ...], *, show_critiques: bool = False) -> str:
    lines = [f"solution {result.id}: {verdict_line(result)}",
             f"{'step':>4}  {'score':>5}  {'verdict':<11} text"]
    for step, text in zip(result.steps, steps_text, strict=False):
        score = "-" if step.score is None else f"{step.score:.3f}"
        lines.append(f"{step.index:>4}  {score:>5}  {step.verdict:<11} {excerpt(text)}")
        if show_critiques:
            for number, (critique, p_yes) in enumerate(zip(step.critiques, step.p_yes, strict=False), start=1):
                lines.append(f"      critique {number} (P(Yes) = {p_yes:.3f}):")
                lines.extend("        " + line for line in critique.splitlines())
    return "\n".join(lines) + "\n"


def verdict_line(result: SolutionResult) -> str:
    scored = sum(step.score is not None for step in result.steps)
    total = f"solution score {result.solution_score:.3f}" if result.solution_score is not None else ""
    if result.first_error_step is None:
        return f"all {scored} scored steps look correct; {total}"
    return f"first error at step {result.first_error_step} of {len(result.steps)}; {total}"


def to_json_line(result: SolutionResult, *, critiques: bool) -> str:
    return json.dumps(result.to_dict(critiques=critiques), ensure_ascii=False) + "\n"


class ResultsFile:
    """JSONL results, appended and synced to disk as each solution finishes.

    Opening an existing file reads the ids already there (so a rerun skips them) and cuts off a
    last line left half-written by a killed run; every complete line is kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()
        if path.exists():
            for number, record in read_jsonl(path, what="a JSONL results file", skip_torn_end=True):
                if "id" not in record:
                    raise InputError(f"{path} line {number}: not an rprm-lite result (no 'id'); "
                                     "choose another --output file")
                self.done.add(str(record["id"]))
        # opened now, before any model work, so an unwritable path fails at once
        self._writer: JsonlWriter | None = JsonlWriter(path, fsync=True)

    def append(self, line: str) -> None:
        self._writer.write_line(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
