"""What `rprm-lite solve` does: read questions, solve each with a `Solver`, print a table or JSON, append JSONL.

Questions come as JSONL (`{"id": ..., "question": ...}` per line), a JSON list of such objects, one object, or
`-` (stdin). A file with a question that has no text is refused before any model loads (exit 2). A question
the models cannot solve (its prompt or a step longer than a context) is reported with outcome "error" and its
reason; the other questions go on, it is not written to `--output` (a rerun tries it again), and the run exits
1 after the rest. `--output` resumes like `score --output`: ids already there, solved with the same settings,
are skipped.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rprm_lite.errors import InputError, RprmError
from rprm_lite.jsonl import JsonlWriter, loads, parse_jsonl, read_jsonl, read_limited
from rprm_lite.options import Options, option
from rprm_lite.output import excerpt
from rprm_lite.progress import ProgressBar
from rprm_lite.solve import JUDGED, SolveConfig, Solver, SolveResult

MAX_QUESTIONS_BYTES = 64 * 2**20
RESULT_START = '{"id": '


@dataclass(frozen=True)
class Question:
    id: str
    question: str


@dataclass(frozen=True)
class SolveJob:
    """One `rprm-lite solve` run: the questions, the policy, and how the results are shown and kept."""

    source: str
    config: SolveConfig = field(default_factory=SolveConfig)
    judge_model: Path | None = None
    judge_overrides: dict[str, Any] = field(default_factory=dict)  # ScoreConfig fields of the judge
    judge_lora: tuple[str, ...] = ()
    prefix_cache: str = "auto"
    remote: Any = None  # a RemoteConfig: the judge on servers
    vocab: Path | None = None
    json_out: bool = False
    output: Path | None = None
    policy: Path | None = option(None, help="The policy: a GGUF chat model, which writes the solutions with its own "
                                 "chat template.", shown_default="SmolLM2-135M-Instruct with the bundled policy "
                                 "adapter")
    policy_lora: tuple[str, ...] = option((), help="LoRA adapter GGUF applied to the policy, with an optional scale; "
                                          "repeat for more.", flag="--policy-lora", metavar="ADAPTER.gguf[:SCALE]",
                                          cli_type=list[str] | None, cli_default=None, parse=tuple)
    show_candidates: bool = option(False, help="Print (or include in JSON) every candidate with its score.",
                                   flag="--show-candidates")


SOLVE_JOB_OPTIONS = Options(SolveJob)
SOLVE_OPTIONS = Options(SolveConfig, changes={"strategy": {"cli_type": str}})


def read_questions(source: str) -> list[Question]:
    """Every question of a JSONL file, a JSON list, one JSON object, or '-' (stdin)."""
    name = "<stdin>" if source == "-" else source
    if source == "-":
        data = sys.stdin.buffer.read(MAX_QUESTIONS_BYTES + 1)
        if len(data) > MAX_QUESTIONS_BYTES:
            raise InputError(f"<stdin>: more than {MAX_QUESTIONS_BYTES:,} bytes of questions")
    else:
        if not Path(source).is_file():
            raise InputError(f"{source}: no such file; expected JSONL questions ({{\"id\": ..., \"question\": ...}})")
        data = read_limited(source, where=source, max_bytes=MAX_QUESTIONS_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    items = _items(name, text)
    questions = [_question(item, where, number) for number, (where, item) in enumerate(items, start=1)]
    if not questions:
        raise InputError(f"{name}: holds no questions")
    ids = [q.id for q in questions]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InputError(f"{name}: two questions share the id {repeated[0]!r}; ids must be unique so that results "
                         "can be matched and resumed")
    return questions


def _items(name: str, text: str) -> list[tuple[str, Any]]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            whole = loads(stripped, where=name)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        return [(f"{name} item {i}", item) for i, item in enumerate(whole, start=1)]
    if "\n" not in stripped and stripped.startswith("{"):
        return [(name, loads(stripped, where=name))]
    return [(f"{name} line {number}", item) for number, item in parse_jsonl(name, text)]


def _question(item: Any, where: str, number: int) -> Question:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object with 'question', got {type(item).__name__}")
    text = item.get("question", item.get("problem"))
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: the question has no text (expected 'question', a non-empty string)")
    given = item.get("id")
    if given is not None and (isinstance(given, bool) or not isinstance(given, (str, int))):
        raise InputError(f"{where}: 'id' must be a string or an integer")
    return Question(id=str(given) if given is not None else f"q{number}", question=text)


def run_solve_job(job: SolveJob) -> None:
    """Solve every question of `job.source` not already in `job.output`; exit code 1 (RprmError) at the end
    when a question could not be solved."""
    questions = read_questions(job.source)
    with contextlib.ExitStack() as stack:
        solver = stack.enter_context(_solver(job, stack))
        if solver.note:
            _note(f"note: {solver.note}")
        settings = json.loads(json.dumps(solver.settings()))
        writer, done = _results_file(job.output, settings) if job.output else (None, set())
        if writer is not None:
            stack.callback(writer.close)
        todo = [q for q in questions if q.id not in done]
        if len(todo) < len(questions):
            _note(f"skipping {len(questions) - len(todo)} question(s) already in {job.output}")
        failed = _solve_all(job, solver, todo, writer)
    if failed:
        kept = f"; they are not in {job.output}, so a rerun tries them again" if job.output else ""
        raise RprmError(f"{len(failed)} question(s) could not be solved ({', '.join(failed[:5])}){kept}")


def _solver(job: SolveJob, stack: contextlib.ExitStack) -> Solver:
    threads = job.judge_overrides.get("threads")
    judge: Any = job.judge_model
    if job.remote is not None and job.judge_lora:
        raise InputError("--lora applies adapters to the local judge; a --backend server serves its own model "
                         "(load the adapter on the server)")
    if job.remote is not None and job.config.strategy in JUDGED:
        from rprm_lite.job import make_scorer

        judge = stack.enter_context(make_scorer(job.judge_model, {**job.judge_overrides, "all_steps": True},
                                                remote=job.remote, vocab=job.vocab))
    options = {**job.judge_overrides, "lora": list(job.judge_lora), "prefix_cache": job.prefix_cache}
    return Solver(job.policy, judge, policy_lora=list(job.policy_lora), config=job.config, threads=threads,
                  judge_options=options)


def _results_file(path: Path, settings: dict[str, Any]) -> tuple[JsonlWriter, set[str]]:
    done: set[str] = set()
    if path.exists():
        for number, record in read_jsonl(path, what="a JSONL file of solve results", skip_torn_end=True):
            if "id" not in record or "config" not in record:
                raise InputError(f"{path} line {number}: not an rprm-lite solve result; it is left untouched: "
                                 "choose another --output")
            if record["config"] != settings:
                changed = sorted(k for k in {*settings, *record["config"]}
                                 if settings.get(k) != record["config"].get(k))
                raise InputError(f"{path} holds results made with other settings (line {number}: "
                                 f"{', '.join(changed)}); use another --output, or the same settings to resume")
            done.add(str(record["id"]))
    return JsonlWriter(path, fsync=True, record_start=RESULT_START), done


def _solve_all(job: SolveJob, solver: Solver, todo: list[Question], writer: JsonlWriter | None) -> list[str]:
    failed: list[str] = []
    finished = 0
    try:
        with ProgressBar("solving", len(todo)) as bar:
            for question in todo:
                bar.advance(0, label=question.id)
                result = solver.solve(question.question, id=question.id, on_step=lambda name, step: bar.advance(
                    0, label=f"{name}: {excerpt(step.text, 40)}"))
                line = json.dumps(result.to_dict(candidates=job.show_candidates), ensure_ascii=False) + "\n"
                if result.outcome == "error":
                    failed.append(result.id)
                    _note(f"{result.id}: {result.error}")
                elif writer is not None:
                    writer.write_line(line)
                sys.stdout.write(line if job.json_out else format_solution(result, candidates=job.show_candidates))
                sys.stdout.flush()
                bar.advance(1)
                finished += 1
    except KeyboardInterrupt:
        where = f"; their results are in {job.output}" if job.output else ""
        _note(f"stopped after {finished} of {len(todo)} question(s){where}")
        raise
    return failed


def format_solution(result: SolveResult, *, candidates: bool = False) -> str:
    """The terminal's table of one result."""
    work = result.work
    answer = "no answer" if result.answer is None else f"answer {result.answer}"
    lines = [f"question {result.id} ({result.strategy}): {answer} [{result.outcome}]; {work.policy_tokens} policy "
             f"tokens, {work.critiques} critiques, {work.seconds:.1f} s"]
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.steps:
        lines.append(f"{'step':>4}  {'score':>5}  text")
    for number, step in enumerate(result.steps, start=1):
        lines.append(f"{number:>4}  {_score(step.score)}  {excerpt(step.text)}")
        for index, candidate in enumerate(step.candidates if candidates else ()):
            text = candidate.steps[0] if candidate.steps else ""
            mark = "*" if index == step.chosen else " "
            lines.append(f"      {mark} {_score(candidate.score)}  {excerpt(text) or '(empty)'}")
    for number, candidate in enumerate(result.candidates if candidates else (), start=1):
        lines.append(f"  candidate {number}: score {_score(candidate.score).strip()}, answer "
                     f"{candidate.answer or '-'}: {excerpt(' / '.join(candidate.steps)) or '(empty)'}")
    return "\n".join(lines) + "\n"


def _score(score: float | None) -> str:
    return f"{'-':>5}" if score is None else f"{score:.3f}"


def _note(text: str) -> None:
    print(text, file=sys.stderr)
