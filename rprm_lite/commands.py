"""What the CLI commands do, as plain functions (the CLI only parses options; a `ScoreJob` holds them, checked)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rprm_lite import output
from rprm_lite.errors import InputError, ModelFileError
from rprm_lite.job import JobScorer, ScoreJob
from rprm_lite.progress import ProgressBar
from rprm_lite.results import UNREAD
from rprm_lite.solution import Solution, read_solutions

if TYPE_CHECKING:  # imported where used: `score` loads llama.cpp only once its input is checked
    from rprm_lite.model_file import ModelInfo
    from rprm_lite.prefix_cache import PrefixCache
    from rprm_lite.results import SolutionResult, StepResult
    from rprm_lite.scorer import Scorer
    from rprm_lite.step_cache import StepCache


def run_score_job(job: ScoreJob) -> None:
    """Score every solution of `job.source`, appending each result as soon as it is finished.

    The options were checked when the job was made; then, in this order and before the model loads: every
    solution of the input, the model file (pre-flight; or the servers, connected), the output file (a results
    file made with these same settings). A run with nothing left to score loads no model.
    """
    from rprm_lite.step_cache import StepCache

    if job.source is None:
        raise InputError("a score job needs its solutions: a file, or - for stdin")
    solutions = read_solutions(job.source)
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(JobScorer(job))
        cache = StepCache(job.cache)
        results = None
        if job.output:
            results = stack.enter_context(contextlib.closing(output.ResultsFile(job.output, backend.settings)))
        todo = [s for s in solutions if results is None or s.id not in results.done]
        if results is not None and len(todo) < len(solutions):
            _note(f"skipping {len(solutions) - len(todo)} solution(s) already in {job.output}")
        if not todo:
            _note("nothing left to score")
            return
        scorer = backend.open(cache)
        if backend.model_info is not None and backend.model_info.description:
            _say_model_note(job, backend.model_info)
        try:
            _score_all(job, scorer, todo, results)
        finally:
            _note_after(job, scorer, cache)


def _note_after(job: ScoreJob, scorer: Scorer, cache: StepCache) -> None:
    """What the drafts did (--draft), and what the caches kept or could not write."""
    prefixes, drafts = scorer.prefix_cache, scorer.draft_stats
    if drafts is not None and scorer.config.draft != "off":
        _note(drafts.note())
    if job.cache is not None:
        _note_cache(job.cache, cache, prefixes)
    elif prefixes is not None and prefixes.write_errors:
        _note(f"note: {_prefix_write_error(prefixes)}; it is kept in memory for this run and the results are "
              "not affected (set $RPRM_CACHE_DIR to a folder you can write, or pass --prefix-cache memory)")


def _score_all(job: ScoreJob, scorer: Scorer, todo: list[Solution],
               results: output.ResultsFile | None) -> None:
    finished, noted = 0, False
    unread: list[int] = []
    try:
        with ProgressBar("scoring", len(todo)) as bar:
            def advance(solution: Solution, step: StepResult) -> None:  # a unit is a solution; the label names the step
                bar.advance(1 if step.index == len(solution.steps) else 0,
                            label=f"{solution.id} step {step.index}/{len(solution.steps)}")

            for solution, result in zip(todo, scorer.score_many(todo, on_step=advance), strict=True):
                if not noted:
                    noted = _note_short_critiques(result, scorer)
                line = output.to_json_line(result, critiques=job.show_critiques)
                steps_unread = sum(step.verdict == UNREAD for step in result.steps)
                unread += [steps_unread] if steps_unread else []
                if results is not None and not steps_unread:  # only results that were read are kept
                    results.append(line)
                sys.stdout.write(line if job.json_out else
                                 output.format_table(result, solution.steps, show_critiques=job.show_critiques))
                sys.stdout.flush()
                finished += 1
    except KeyboardInterrupt:
        where = f"; their results are in {job.output}" if job.output else ""
        _note(f"stopped after {finished} of {len(todo)} solution(s){where}")
        raise
    if unread:
        _refuse_unread(unread, job.output)


def _refuse_unread(unread: list[int], kept: Path | None) -> None:
    """A run with steps whose verdict could not be read fails after every other result is written: its
    output is not a full set of verdicts, and exit 0 would say it is."""
    from rprm_lite.remote.scorer import UNREAD_WHY
    from rprm_lite.remote.transport import RemoteError

    where = f"; those solutions are not in {kept}, so a rerun scores them again" if kept else ""
    raise RemoteError(f"{sum(unread)} step(s) of {len(unread)} solution(s) could not be read: {UNREAD_WHY}{where}")


def _note_cache(folder: Path, cache: StepCache, prefixes: PrefixCache | None = None) -> None:
    """The --cache note: steps reused, and the prompt prefixes put back when there were any."""
    text = f"cache {folder}: {cache.hits} of {cache.hits + cache.misses} scored step(s) reused"
    if cache.corrupt:
        text += f"; {cache.corrupt} unreadable entr{'y' if cache.corrupt == 1 else 'ies'} ignored and rewritten"
    if cache.write_errors:
        text += (f"; {cache.write_errors} could not be written ({cache.last_write_error}; is the folder full or "
                 "read-only?): the results are not affected")
    if prefixes is not None and prefixes.restored:
        text += (f"; instructions put back for {prefixes.restored} of {prefixes.lookups} prompt(s) decoded from the "
                 f"start ({prefixes.saved_tokens} tokens not decoded)")
    if prefixes is not None and prefixes.write_errors:
        text += f"; {_prefix_write_error(prefixes)}: the results are not affected"
    _note(text)


def _prefix_write_error(prefixes: PrefixCache) -> str:
    return f"the prompt's prefix state could not be saved in {prefixes.directory} ({prefixes.last_write_error})"


def _note_short_critiques(result: SolutionResult, scorer: Scorer) -> bool:
    """Say once per run when critiques had to be shortened to fit the context; True when said."""
    config, used = scorer.config, result.config["effective_max_tokens"]
    if used >= config.max_tokens:
        return False
    _note(f"note: critiques were limited to {used} tokens (not {config.max_tokens}) to fit the model's context of "
          f"{scorer.context_positions} tokens" + (f" and --n-ctx {config.n_ctx}" if config.n_ctx else ""))
    return True


def _say_model_note(job: ScoreJob, info: ModelInfo) -> None:
    names = " + ".join([info.path.name, *(adapter.path.name for adapter in info.adapters)])
    text = f"note: model {names}: {info.description}"
    if job.json_out:
        _note(text)  # JSON lines on stdout stay pure
    else:
        sys.stdout.write(text + "\n")  # above the table, once, so a saved table carries it too


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def prompt_text(source: str, *, step: int, style: str, solution_id: str | None = None) -> str:
    from rprm_lite.prompt import step_prompt

    solutions = read_solutions(source)
    solution = solutions[0]
    if solution_id is not None:
        matches = [s for s in solutions if s.id == solution_id]
        if not matches:
            raise InputError(f"{source}: no solution with id {solution_id!r}")
        solution = matches[0]
    return step_prompt(solution, step, style)


def _weight_lines(path: Path) -> list[str]:
    """Where llama.cpp put the weights (loading them, without a context) and the rule that decided it."""
    from rprm_lite.engine import Engine

    engine = Engine(path, threads=1)
    try:
        buffers = ", ".join(f"{name} {size:.1f} MiB" for name, size in engine.weight_buffers.items())
        return [f"  weights: {buffers or 'unknown'}", f"  buffers: {engine.buffer_rule.describe()}"]
    finally:
        engine.close()


def info_text(model: Path | None, lora: tuple[str, ...] = ()) -> str:
    import llama_cpp

    from rprm_lite.adapter_file import with_adapters
    from rprm_lite.model_file import inspect_model, plain_value, resolve_model

    lines = [
        f"llama-cpp-python {llama_cpp.__version__}",
        f"GPU offload: {'yes' if llama_cpp.llama_supports_gpu_offload() else 'no (CPU build)'}",
        f"system: {llama_cpp.llama_print_system_info().decode().strip()}",
    ]
    try:
        path, bundled = resolve_model(model)
        info = inspect_model(path)
        lora = (*map(str, bundled), *lora)
    except ModelFileError as exc:
        if model is not None or lora:  # the model asked for is missing or broken: an error, not a note
            raise
        lines.append(f"model: none ({exc})")
        return "\n".join(lines) + "\n"
    lines += [
        f"model: {info.path}",
        f"  architecture: {info.architecture}" + (f" ({info.name})" if info.name else ""),
        f"  size: {info.size / 2**20:.1f} MiB, {info.n_tensors} tensors, GGUF v{info.version}",
        f"  quantization: {info.quantization}",
        f"  context length: {info.context_length}",
    ]
    lines += [f"  {key}: {plain_value(value)}" for key, value in sorted(info.rprm.items())]
    lines += _weight_lines(info.path)
    info = with_adapters(info, lora)
    for adapter in info.adapters:
        lines += [f"lora: {adapter.path} (scale {adapter.scale:g})",
                  f"  rank {'/'.join(map(str, adapter.ranks))}, alpha {adapter.alpha:g}, {adapter.n_pairs} matrices, "
                  f"{adapter.size / 2**20:.2f} MiB, sha256 {adapter.sha256}"]
        lines += [f"  {key}: {plain_value(value)}" for key, value in sorted(adapter.rprm.items())]
    config = info.default_config()
    lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    return "\n".join(lines) + "\n"
