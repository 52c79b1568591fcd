"""`rprm-lite rerank CANDIDATES`: the best of N candidate solutions per problem, by aggregated PRM score.

Options map 1:1 onto `ScoreConfig` fields, as on `score`. With `--output` each problem's line is appended as it
finishes, so a rerun skips the problems already there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rprm_lite.config import SCORE_OPTIONS, ScoreConfig
from rprm_lite.exits import exit_on_error
from rprm_lite.job import JOB_OPTIONS
from rprm_lite.jsonl import JsonlWriter
from rprm_lite.labelled.records import read_records
from rprm_lite.options import command_options
from rprm_lite.prefix_cache import checked_mode
from rprm_lite.remote.options import REMOTE_OPTIONS, remote_from_options
from rprm_lite.remote.settings import RemoteConfig, refuse_unsupported
from rprm_lite.rerank import rank, ranked_line, read_problems, score_problem
from rprm_lite.scorer import Scorer

app = typer.Typer(add_completion=False, rich_markup_mode=None)

RERANK_OPTIONS = SCORE_OPTIONS.without("threshold", "verdict", "all_steps", "uncertain_band", "calibration",
                                       aggregation=dict(help="Solution score from its steps: min, product, mean "
                                                        "or last."))
Candidates = Annotated[Path, typer.Argument(metavar="CANDIDATES",
                                             help="JSONL: one problem per line with 'candidates'.")]
if TYPE_CHECKING:
    ModelOpt = Path | None
    JsonOpt = bool
else:  # the options of `score`, as its job declares them
    ModelOpt = JOB_OPTIONS.annotation("model")
    JsonOpt = JOB_OPTIONS.annotation("json_out")
cli_errors = exit_on_error(interrupted="interrupted: finished items are saved; run the same command to resume")


def make_scorer(model: Path | None, settings: dict[str, Any], remote: RemoteConfig | None = None,
                vocab: Path | None = None) -> Scorer:
    """The real scorer (local, or on the servers of a RemoteConfig); tests replace this function with a fake."""
    from rprm_lite.job import make_scorer as make

    return make(model, settings, remote=remote, vocab=vocab)


@app.command("rerank")
@cli_errors
@command_options(settings=RERANK_OPTIONS, remote=REMOTE_OPTIONS, job=JOB_OPTIONS.only("prefix_cache"))
def rerank_command(
    candidates: Candidates, model: ModelOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Append one JSON line per problem here; a rerun skips those.")] = None,
    as_json: JsonOpt = False, *, settings: dict[str, Any], remote: dict[str, Any], job: dict[str, Any],
) -> None:
    """Pick the best of N candidate solutions per problem by aggregated PRM score."""
    vocab, remote_config = remote.get("vocab"), remote_from_options(**remote)
    settings = {**settings, "all_steps": True}
    ScoreConfig(**settings)  # the options checked before any data or model work
    mode = checked_mode(job["prefix_cache"])
    if remote_config is not None:
        refuse_unsupported({}, prefix_cache=mode)  # the local engine's option
    elif mode != "auto":
        settings["prefix_cache"] = mode
    how = settings.get("aggregation", ScoreConfig().aggregation)
    done = {str(r.get("id")) for r in read_records(output)} if output and output.exists() else set()
    problems = [p for p in read_problems(candidates) if p.id not in done]
    scorer = None
    if any(p.unscored for p in problems):
        scorer = (make_scorer(model, settings) if remote_config is None
                  else make_scorer(model, settings, remote_config, vocab))
    writer = JsonlWriter(output) if output is not None else None
    try:
        for problem in problems:
            ranked = rank(score_problem(problem, scorer), how)
            if writer is not None:
                writer.write(ranked)  # appended as each problem finishes, so a rerun resumes
            typer.echo(json.dumps(ranked) if as_json else ranked_line(ranked))
    finally:
        if scorer is not None:
            scorer.close()
        if writer is not None:
            writer.close()
    if done:
        typer.echo(f"{len(done)} problem(s) already in {output} were skipped", err=True)
