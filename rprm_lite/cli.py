"""The `rprm-lite` command line: a thin client of the library.

Options come from the fields of the settings dataclasses (rprm_lite/options.py), which also validate them;
library errors become one-line messages on stderr with a non-zero exit, never tracebacks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rprm_lite.config import SCORE_OPTIONS
from rprm_lite.exits import exit_on_error, run_command, run_program, say_error
from rprm_lite.job import JOB_OPTIONS, score_overrides
from rprm_lite.lazy_cli import LazyGroup
from rprm_lite.options import command_options
from rprm_lite.remote.options import REMOTE_OPTIONS
from rprm_lite.solve_command import SOLVE_JOB_OPTIONS, SOLVE_OPTIONS

__all__ = ["JsonOpt", "ModelOpt", "app", "exit_on_error", "main", "run_command", "run_program", "say_error"]

app = typer.Typer(cls=LazyGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Step-by-step verdicts on math solutions with R-PRM, offline, on llama.cpp.")

ModelOpt = JOB_OPTIONS.annotation("model")  # for the benchmarks' commands: the option of `score` and `serve`
StyleOpt = Annotated[str | None, typer.Option("--prompt-style",
                                                 help="r-prm-eval (released evaluation prompt) or chatml.")]


Opt = typer.Option
FileArg = Annotated[str, typer.Argument(
    metavar="FILE", help="Solution JSON, ProcessBench item, JSONL (one per line), or - for stdin.")]
JsonOpt = JOB_OPTIONS.annotation("json_out")
QuestionsArg = Annotated[str, typer.Argument(
    metavar="QUESTIONS", help='JSONL ({"id": ..., "question": ...} per line), a JSON list of them, or - for stdin.')]
JudgeOpt = Annotated[Path | None, typer.Option("--model", "-m", help="The judge's GGUF (default: $RPRM_MODEL, else "
                                                  "the demo R-PRM).", show_default=False)]
SolveOutputOpt = Annotated[Path | None, Opt("--output", "-o", help="Append JSONL results here as each question is "
                                               "solved; a rerun skips questions already there.")]
SolveJsonOpt = Annotated[bool, Opt("--json", help="Print one JSON object per question.")]
JUDGE_JOB_OPTIONS = JOB_OPTIONS.only("lora", "prefix_cache", lora={"help": "LoRA adapter GGUF applied to the judge, "
                                     "with an optional scale (default 1); repeat for more."})


@app.command()
@command_options(job=JOB_OPTIONS, settings=SCORE_OPTIONS, remote=REMOTE_OPTIONS)
def score(file: FileArg, *, job: dict[str, Any], settings: dict[str, Any], remote: dict[str, Any]) -> None:
    """Score every step of one or more solutions and report the first wrong step."""
    from rprm_lite.commands import run_score_job
    from rprm_lite.job import ScoreJob

    run_score_job(ScoreJob.of(file, job=job, settings=settings, remote=remote))


@app.command()
@command_options(solve=SOLVE_OPTIONS, job=SOLVE_JOB_OPTIONS, judge_job=JUDGE_JOB_OPTIONS,
                 settings=SCORE_OPTIONS.without("all_steps"), remote=REMOTE_OPTIONS)
def solve(questions: QuestionsArg, model: JudgeOpt = None, json_out: SolveJsonOpt = False,
          output: SolveOutputOpt = None,
          *, solve: dict[str, Any], job: dict[str, Any], judge_job: dict[str, Any], settings: dict[str, Any],
          remote: dict[str, Any]) -> None:
    """Solve questions: a policy writes the steps, the R-PRM judge chooses among its candidates."""
    from rprm_lite.remote.options import remote_from_options
    from rprm_lite.solve import SolveConfig
    from rprm_lite.solve_command import SolveJob, run_solve_job

    run_solve_job(SolveJob(source=questions, config=SolveConfig(**solve), judge_model=model,
                           judge_overrides=score_overrides(settings), judge_lora=judge_job.get("lora", ()),
                           prefix_cache=judge_job.get("prefix_cache", "auto"), remote=remote_from_options(**remote),
                           vocab=remote.get("vocab"), json_out=json_out, output=output, **job))


@app.command()
def prompt(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Solution file (its first solution unless --id).")],
    step: Annotated[int, typer.Option("--step", help="1-based step number.")],
    prompt_style: StyleOpt = None,
    solution_id: Annotated[str | None, typer.Option("--id", help="Which solution of a JSONL file.")] = None,
) -> None:
    """Print the exact prompt text for one step, byte for byte."""
    from rprm_lite.commands import prompt_text

    sys.stdout.write(prompt_text(file, step=step, style=prompt_style or "r-prm-eval", solution_id=solution_id))


@app.command()
@command_options(job=JOB_OPTIONS.only("model", "lora"))
def info(*, job: dict[str, Any]) -> None:
    """Show the llama.cpp build, the model (and its LoRA adapters) and the resolved default settings."""
    from rprm_lite.commands import info_text

    sys.stdout.write(info_text(job.get("model"), job.get("lora", ())))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure is one `error: ...` line on stderr and a documented exit code."""
    run_command(typer.main.get_command(app), argv, prog_name="rprm-lite")


if __name__ == "__main__":
    main()
