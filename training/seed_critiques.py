"""`rprm-lite data seed`: teacher critiques of labelled steps, kept only when their verdict agrees.

Writes one line per kept critique to `out`, and one line per dropped critique (with its reason)
to `<out stem>.dropped.jsonl` beside it. Both files are appended as results arrive, so a rerun of
the same command skips every (solution, step, sample) already in either file.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprm_lite.config import PROMPT_STYLES
from rprm_lite.jsonl import JsonlWriter, existing_records
from rprm_lite.training.critiques import DropReason, Judged, judge
from rprm_lite.training.errors import TeacherError
from rprm_lite.training.jobconfig import JobConfig, option
from rprm_lite.training.labels import read_labelled_steps
from rprm_lite.training.teacher import Task, Teacher, make_teacher


@dataclass(frozen=True, kw_only=True)
class SeedConfig(JobConfig):
    """Settings of `rprm-lite data seed`; every field is a command-line option."""

    solutions: str = option(help="Labelled solutions: JSON or JSONL with 'label' (ProcessBench) or 'labels'.")
    teacher: str = option(help="Teacher: an OpenAI-compatible base URL (http://host:8000/v1) or a GGUF file.")
    out: str = option(help="Output JSONL of kept critiques (appended; a rerun resumes).")
    teacher_model: str = option("", help="Model name sent to the endpoint (URL teachers).")
    api_key_env: str = option("", help="Environment variable holding the endpoint's API key, if it needs one.")
    samples: int = option(1, help="Critiques asked per labelled step.")
    temperature: float = option(0.7, help="Teacher sampling temperature.")
    top_p: float = option(0.95, help="Teacher nucleus sampling.")
    max_tokens: int = option(4096, help="Longest critique, in tokens.")
    seed: int = option(0, help="Seed; each (solution, step, sample) gets its own seed derived from it.")
    concurrency: int = option(8, help="Requests in flight at once (URL teachers).")
    max_retries: int = option(5, help="Retries of a failed request, with exponential backoff.")
    retry_delay: float = option(1.0, help="First backoff delay in seconds; doubles on each retry.")
    timeout: float = option(300.0, help="Seconds to wait for one answer.")
    teacher_prompt_style: str = option("r-prm-eval", help="Prompt style for a GGUF teacher.")
    n_gpu_layers: int = option(0, help="Layers of a GGUF teacher to offload to the GPU.")

    def problems(self):
        yield from self.at_least(samples=1, concurrency=1, max_tokens=1, max_retries=0)
        if self.temperature < 0:
            yield f"temperature must be >= 0, got {self.temperature}"
        if not 0 < self.top_p <= 1:
            yield f"top_p must be in (0, 1], got {self.top_p}"
        yield from self.one_of("teacher_prompt_style", PROMPT_STYLES)


@dataclass
class SeedReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # DropReason value -> count
    new: int = 0  # critiques received in this run (the rest were already in the files)
    todo: int = 0  # critiques to ask for in this run
    out: str = ""

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{self.dropped[r.value]} {r.value.replace('_', ' ')}" for r in DropReason)
        return (f"kept {self.kept} of {self.total} critiques ({self.new} new in this run); dropped: {reasons}; "
                f"written to {self.out}")


def dropped_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".dropped.jsonl")


def build_seed_data(config: SeedConfig, *, teacher: Teacher | None = None,
                    on_result: Callable[[SeedReport], None] | None = None) -> SeedReport:
    """Ask the teacher for every labelled step not yet done, and file each critique as kept or dropped."""
    steps = read_labelled_steps(config.solutions)
    done, report = _resume(config.out)
    tasks = [task for step in steps for sample in range(config.samples)
             if (task := Task(step, sample)).key not in done]
    report.todo = len(tasks)
    own_teacher = teacher is None
    teacher = teacher or _teacher(config)
    try:
        _file_critiques(teacher, tasks, config.out, report, on_result)
    except TeacherError as exc:
        raise TeacherError(f"{exc}. The {report.total} critiques already in {config.out} and "
                           f"{dropped_path(config.out).name} are kept; rerun the same command to resume "
                           f"the {report.todo - report.new} left") from None
    finally:
        if own_teacher and hasattr(teacher, "close"):
            teacher.close()
    return report


def _file_critiques(teacher: Teacher, tasks: list[Task], out: str, report: SeedReport,
                    on_result: Callable[[SeedReport], None] | None) -> None:
    name = getattr(teacher, "name", "")
    with JsonlWriter(out) as kept_file, JsonlWriter(dropped_path(out)) as dropped_file:
        for task, critique in teacher.critiques(tasks):
            judged = judge(critique, step_correct=task.step.correct)
            if judged.kept:
                kept_file.write(seed_record(task, judged, name))
                report.kept += 1
            else:
                dropped_file.write(seed_record(task, judged, name))
                report.dropped[judged.drop_reason.value] += 1
            report.new += 1
            if on_result is not None:
                on_result(report)


def seed_record(task: Task, judged: Judged, teacher_name: str) -> dict[str, Any]:
    step = task.step
    record: dict[str, Any] = {
        "id": step.solution.id, "step": step.number, "sample": task.sample, "label": step.label,
        "question": step.solution.question, "steps": list(step.solution.steps),
    }
    if judged.kept:
        record |= {"critique": judged.verdict.text, "verdict": judged.verdict.word}
    else:
        record |= {"reason": judged.drop_reason.value, "critique": judged.critique,
                   "verdict": judged.verdict.word if judged.verdict else None}
    return record | {"teacher": teacher_name}


def _resume(out: str) -> tuple[set[tuple[str, int, int]], SeedReport]:
    report = SeedReport(out=out)
    kept = existing_records(out)
    dropped = existing_records(dropped_path(out))
    report.kept = len(kept)
    report.dropped.update(record.get("reason", "") for record in dropped)
    done = {(str(r.get("id")), r.get("step"), r.get("sample")) for r in kept + dropped}
    return done, report


def _teacher(config: SeedConfig) -> Teacher:
    return make_teacher(
        config.teacher, model=config.teacher_model, api_key_env=config.api_key_env, samples=config.samples,
        temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens, seed=config.seed,
        concurrency=config.concurrency, max_retries=config.max_retries, retry_delay=config.retry_delay,
        timeout=config.timeout, prompt_style=config.teacher_prompt_style, n_gpu_layers=config.n_gpu_layers)


def balance_verdicts(kept: Path, out: Path, *, no_share: float, seed: int) -> dict[str, int]:
    """Copy the kept critiques to `out`, Yes ones sampled down (seeded) so that No makes `no_share` of them."""
    lines = kept.read_text(encoding="utf-8").splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    no = [i for i, r in enumerate(records) if r["verdict"] == "No"]
    yes = [i for i, r in enumerate(records) if r["verdict"] != "No"]
    if no_share > 0 and len(no) < no_share * len(records):
        keep_yes = round(len(no) * (1 - no_share) / no_share) if no_share < 1 else 0
        yes = sorted(random.Random(f"balance:{seed}").sample(yes, min(keep_yes, len(yes))))
    chosen = sorted(no + yes)
    temp = out.with_suffix(".tmp")
    temp.write_text("".join(lines[i] for i in chosen), encoding="utf-8")
    temp.replace(out)
    return {"yes": len(yes), "no": len(no)}
