"""`rprm-lite bench ...`: thin commands over the bench library (`rerank` and `calibrate` are runtime commands).

Options map 1:1 onto `ScoreConfig` fields. Errors a user can fix print one line and exit non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from rprm_lite.cli import JsonOpt, ModelOpt, exit_on_error
from rprm_lite.config import SCORE_OPTIONS, ScoreConfig
from rprm_lite.errors import InputError
from rprm_lite.labelled import prmbench, processbench
from rprm_lite.labelled.records import METRICS_FILE, read_records
from rprm_lite.options import command_options
from rprm_lite.progress import ProgressBar
from rprm_lite.remote.options import REMOTE_OPTIONS, remote_from_options
from rprm_lite.rerank import read_problems

from . import bestofn, report, sweeps, uncertain_report
from .harness import BenchItem, run_items

app = typer.Typer(help="Benchmarks: ProcessBench, PRMBench, threshold and K sweeps, best-of-N.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)


class Benchmark(str, Enum):
    processbench = "processbench"
    prmbench = "prmbench"


BenchmarkArg = Annotated[Benchmark, typer.Argument(metavar="BENCHMARK", help="processbench or prmbench")]


# Scoring options come from ScoreConfig's fields (rprm_lite/options.py), as on `score`: left out, each falls
# back to the model file's rprm.* defaults, then to ScoreConfig's. Each command takes those that apply to it.
PROCESSBENCH_OPTIONS = SCORE_OPTIONS.without("aggregation", "calibration", all_steps=dict(
    flag="--all-steps/--early-stop", cli_default=True, help="Score every step (needed to sweep lower thresholds)."))
PRMBENCH_OPTIONS = SCORE_OPTIONS.without("all_steps", "aggregation", "calibration", threshold=dict(
    help="A step is labelled correct when its score is above this."))
BON_OPTIONS = SCORE_OPTIONS.without("threshold", "verdict", "all_steps", "aggregation", "uncertain_band",
                                    "calibration")
Out = Annotated[Path, typer.Option(help="Folder for predictions.jsonl, run.json and metrics.")]
Limit = Annotated[int | None, typer.Option(min=1, help="Score the first N items of each subset or category.")]
Critiques = Annotated[bool, typer.Option("--critiques/--no-critiques", help="Keep critique texts.")]
Predictions = Annotated[Path, typer.Option(help="Predictions JSONL (ours, or the benchmark's format).")]
Partial = Annotated[bool, typer.Option(help="Evaluate only the predicted items when some are missing.")]
Subsets = Annotated[str | None, typer.Option(help="ProcessBench subsets, comma-separated (default: all).")]
Subset400 = Annotated[bool, typer.Option("--subset400", help="PRMBench: the official 394-item subset.")]
Data = Annotated[str, typer.Option(help="The benchmark's data folder (ProcessBench also takes 'hub').")]


# Turn library errors into one line on stderr and the error's exit code, never a traceback
cli_errors = exit_on_error(interrupted="interrupted: finished items are saved; run the same command to resume")


def checked(settings: dict[str, Any]) -> dict[str, Any]:
    """The ScoreConfig fields the user gave, checked before any data or model work."""
    ScoreConfig(**settings)
    return settings


def make_scorer(model: Path | None, settings: dict[str, Any], remote: Any = None, vocab: Path | None = None) -> Any:
    """The real scorer (local, or on the servers of a RemoteConfig); tests replace this function with a fake."""
    from rprm_lite.job import make_scorer as make

    return make(model, settings, remote=remote, vocab=vocab)


def _scorer(model: Path | None, settings: dict[str, Any], remote: Any, vocab: Path | None) -> Any:
    return make_scorer(model, settings) if remote is None else make_scorer(model, settings, remote, vocab)


# -- accuracy harnesses ------------------------------------------------------------------------------
@app.command("processbench")
@cli_errors
@command_options(settings=PROCESSBENCH_OPTIONS, remote=REMOTE_OPTIONS)
def processbench_command(
    out: Out, model: ModelOpt = None,
    data: Annotated[str, typer.Option(help="Folder of <subset>.json files, or 'hub'.")] = "hub",
    revision: Annotated[str, typer.Option(help="Hub revision for --data hub.")] = processbench.HUB_REVISION,
    subsets: Subsets = None, limit: Limit = None, critiques: Critiques = True, as_json: JsonOpt = False, *,
    settings: dict[str, Any], remote: dict[str, Any],
) -> None:
    """Score ProcessBench and report error/correct accuracy and F1 per subset (resumable)."""
    _score_benchmark(Benchmark.processbench, lambda: _first_per_group(processbench.load_processbench(
        data, processbench.parse_subsets(subsets), revision=revision), "subset", limit),
        model=model, settings=settings, remote=remote, out=out, critiques=critiques, as_json=as_json)


@app.command("prmbench")
@cli_errors
@command_options(settings=PRMBENCH_OPTIONS, remote=REMOTE_OPTIONS)
def prmbench_command(
    out: Out, data: Annotated[Path, typer.Option(help="PRMBench folder of classified JSONL files.")],
    model: ModelOpt = None, subset400: Subset400 = False, limit: Limit = None, critiques: Critiques = True,
    as_json: JsonOpt = False, *, settings: dict[str, Any], remote: dict[str, Any],
) -> None:
    """Score PRMBench (every step) and report PRMScore overall, per dimension and per category."""
    _score_benchmark(Benchmark.prmbench, lambda: _first_per_group(prmbench.load_prmbench(
        data, subset400=subset400), "classification", limit), model=model, settings={**settings, "all_steps": True},
        remote=remote, out=out, critiques=critiques, as_json=as_json)


def _score_benchmark(benchmark: Benchmark, load: Callable[[], list[Any]], *, model: Path | None,
                     settings: dict[str, Any], remote: dict[str, Any], out: Path, critiques: bool,
                     as_json: bool) -> None:
    """Check the options, load the items, score those not yet in `out`, report the official metric."""
    module, name = _MODULES[benchmark], benchmark.value
    vocab, remote = remote.get("vocab"), remote_from_options(**remote)
    settings = checked(settings)
    items = load()
    records, config = _run([i.bench_item() for i in items], model, settings, out, name, critiques,
                           remote=remote, vocab=vocab)
    predictions, _ = module.parse_predictions(records, where=str(out))
    pairs = module.select(items, predictions)
    metrics = module.evaluate(pairs, config.threshold)
    _emit(*uncertain_report.extend(metrics, _TABLES[benchmark](metrics), name, pairs, config.uncertain_band,
                                   config.threshold), out, as_json)


def _first_per_group(items: Sequence[Any], group: str, limit: int | None) -> list[Any]:
    if limit is None:
        return list(items)
    taken: dict[str, int] = {}
    kept = []
    for item in items:
        key = getattr(item, group)
        if taken.get(key, 0) < limit:
            taken[key] = taken.get(key, 0) + 1
            kept.append(item)
    return kept


def _run(bench_items: list[BenchItem], model: Path | None, settings: dict[str, Any], out: Path,
         benchmark: str, critiques: bool, *, remote: Any = None,
         vocab: Path | None = None) -> tuple[list[dict[str, Any]], ScoreConfig]:
    """Score what is not yet in `out`; returns every selected record and the effective settings."""
    scorer = _scorer(model, settings, remote, vocab)
    try:
        with ProgressBar(benchmark, len(bench_items)) as bar:
            summary = run_items(bench_items, scorer, out, benchmark=benchmark, critiques=critiques,
                                on_item=lambda item, record: bar.advance())
    finally:
        _close(scorer)
    typer.echo(f"{summary.scored} scored, {summary.resumed} already in {summary.predictions_path}", err=True)
    return summary.records, scorer.config


def _close(scorer: Any) -> None:
    close = getattr(scorer, "close", None)
    if callable(close):
        close()


def _emit(metrics: dict[str, Any], text: str, out: Path | None, as_json: bool) -> None:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (out / "metrics.md").write_text(text + "\n", encoding="utf-8")
    typer.echo(json.dumps(metrics, indent=2) if as_json else text)


# -- metrics and sweeps from a predictions file --------------------------------------------------------
def _load_pairs(benchmark: Benchmark, predictions: Path, data: Path | str, subsets: str | None,
                subset400: bool, partial: bool) -> list[tuple[Any, Any]]:
    records = read_records(predictions)
    if not records:
        raise InputError(f"{predictions}: no predictions; expected one JSON object per line")
    if benchmark is Benchmark.processbench:
        items = processbench.load_processbench(data, processbench.parse_subsets(subsets))
        parsed, _ = processbench.parse_predictions(records, where=str(predictions))
        return processbench.select(items, parsed, partial=partial)
    everything = prmbench.load_prmbench(data)
    items = prmbench.load_prmbench(data, subset400=True) if subset400 else everything
    parsed, _ = prmbench.parse_predictions(records, where=str(predictions))
    return prmbench.select(items, parsed, partial=partial, known_ids={item.id for item in everything})


_MODULES = {Benchmark.processbench: processbench, Benchmark.prmbench: prmbench}
_TABLES = {Benchmark.processbench: report.processbench_table, Benchmark.prmbench: report.prmbench_table}


@app.command("metrics")
@cli_errors
@command_options(band=SCORE_OPTIONS.only("uncertain_band"))
def metrics_command(
    benchmark: BenchmarkArg,
    predictions: Predictions,
    data: Data,
    threshold: Annotated[float | None, typer.Option(
        help="Re-score at this threshold (ProcessBench default 0.5; PRMBench default: the labels as given).")]
    = None,
    subsets: Subsets = None, subset400: Subset400 = False, partial: Partial = False, as_json: JsonOpt = False,
    output: Annotated[Path | None, typer.Option(help="Also write the metrics JSON here.")] = None, *,
    band: dict[str, Any],
) -> None:
    """The official metric of a predictions file, at any threshold, without the model."""
    band = band.get("uncertain_band")
    pairs = _load_pairs(benchmark, predictions, data, subsets, subset400, partial)
    if benchmark is Benchmark.processbench:
        metrics = processbench.evaluate(pairs, processbench.DEFAULT_THRESHOLD if threshold is None
                                        else threshold)
    else:
        metrics = prmbench.evaluate(pairs, threshold)
    metrics, text = uncertain_report.extend(metrics, _TABLES[benchmark](metrics), benchmark.value, pairs, band,
                                            threshold)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    typer.echo(json.dumps(metrics, indent=2) if as_json else text)


@app.command("sweep")
@cli_errors
def sweep_command(
    benchmark: BenchmarkArg,
    predictions: Predictions,
    data: Data,
    out: Annotated[Path, typer.Option(help="Folder for sweep.json, threshold.png and k_scaling.png.")],
    ks: Annotated[str, typer.Option(help="K values for inference scaling.")] = "1,2,4,8,16",
    draws: Annotated[int, typer.Option(min=1, help="Random subsets of critiques per K.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the critique subsets.")] = 0,
    threshold: Annotated[float, typer.Option(help="Threshold for K-scaling.")] = 0.5,
    subsets: Subsets = None, subset400: Subset400 = False, partial: Partial = False,
) -> None:
    """F1 / PRMScore against the threshold (0.05-0.95) and against K, as JSON and PNG plots."""
    module = _MODULES[benchmark]
    pairs = _load_pairs(benchmark, predictions, data, subsets, subset400, partial)
    pairs = sweeps.without_fixed_labels(pairs)
    ylabel = "F1" if benchmark is Benchmark.processbench else "PRMScore"
    rows = sweeps.threshold_sweep(pairs, module.evaluate, module.headline)
    result: dict[str, Any] = {"benchmark": benchmark.value, "threshold_sweep": rows}
    out.mkdir(parents=True, exist_ok=True)
    written = [sweeps.plot_threshold(rows, out / "threshold.png", title=benchmark.value, ylabel=ylabel)]
    try:
        result["k_scaling"] = sweeps.k_scaling(pairs, module.evaluate, module.headline, threshold=threshold,
                                               ks=_int_list(ks), draws=draws, seed=seed)
        written.append(sweeps.plot_k_scaling(result["k_scaling"], out / "k_scaling.png",
                                             title=benchmark.value, ylabel=ylabel))
    except InputError as exc:
        result["k_scaling"] = {"note": str(exc)}
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    main = "average" if benchmark is Benchmark.processbench else "overall"
    typer.echo(report.sweep_table(rows, main))
    typer.echo("\nwrote " + ", ".join(str(p) for p in [out / "sweep.json", *written]))


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--ks: expected comma-separated integers like 1,2,4,8,16, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"--ks: expected positive integers, got {text!r}")
    return values


@app.command("adaptive-study")
@cli_errors
def adaptive_study_command(
    out: Annotated[Path, typer.Option(help="Folder for adaptive_study.json, .md and .png.")],
    prmbench_scores: Annotated[Path | None, typer.Option(
        help="PRMBench results with 10-critique vote shares (../shared/reference/prmbench-rprm-scores.jsonl).")] = None,
    prmbench_data: Annotated[Path | None, typer.Option(help="The PRMBench data folder.")] = None,
    processbench_predictions: Annotated[list[Path] | None, typer.Option(
        help="predictions.jsonl of `bench processbench` (per-critique p_yes); repeatable.")] = None,
    processbench_data: Annotated[str | None, typer.Option(help="Their ProcessBench-format data folder.")] = None,
    subsets: Subsets = None,
    permutations: Annotated[int, typer.Option(min=1, help="Random critique orders per step.")] = 100,
    wave: Annotated[int, typer.Option(min=1, help="Critiques per wave.")] = 2,
    threshold: Annotated[float, typer.Option(help="A step is wrong below this score.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the critique orders.")] = 0,
) -> None:
    """Adaptive K from recorded critiques: critiques used against the metric lost, per stopping rule."""
    from . import adaptive_study

    traces = []
    if (prmbench_scores is None) != (prmbench_data is None):
        raise InputError("--prmbench-scores and --prmbench-data go together")
    if prmbench_scores is not None:
        traces.append(adaptive_study.prmbench_trace(prmbench_scores, prmbench_data, threshold))
    if processbench_predictions and processbench_data is None:
        raise InputError("--processbench-predictions needs --processbench-data")
    for path in processbench_predictions or []:
        traces.append(adaptive_study.processbench_trace(path, processbench_data, threshold, subsets))
    adaptive_study.run_study(traces, out, permutations=permutations, wave=wave, threshold=threshold, seed=seed)


# -- best-of-N --------------------------------------------------------------------------------------
Candidates = Annotated[Path, typer.Argument(metavar="CANDIDATES",
                                             help="JSONL: one problem per line with 'candidates'.")]


@app.command("bon")
@cli_errors
@command_options(settings=BON_OPTIONS)
def bon_command(candidates: Candidates, out: Out, model: ModelOpt = None, as_json: JsonOpt = False, *,
                settings: dict[str, Any]) -> None:
    """Best-of-N accuracy by PRM score (min, product, mean, last) against pass@1, majority vote, pass@N."""
    settings = checked({**settings, "all_steps": True})
    problems = read_problems(candidates)
    todo = [item for problem in problems for item in bestofn.bench_items(problem)]
    if todo:
        records, _ = _run(todo, model, settings, out, "bon", critiques=False)
        problems = bestofn.with_scores(problems, records)
    result = bestofn.bon_report(problems)
    _emit(result, report.bon_table(result), out, as_json)


@app.command("speed", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def speed_command(ctx: typer.Context) -> None:
    """Speed and memory in one run: vs transformers, engine efficiency, scaling, formats, cold start.

    Every option is passed to `python -m rprm_lite.bench.speed` (see `rprm-lite bench speed --help`).
    """
    from . import speed

    raise typer.Exit(speed.main(list(ctx.args)))


@app.command("search", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def search_command(ctx: typer.Context) -> None:
    """Guided search against greedy, majority@N and best-of-N: accuracy, cost, bootstrap intervals, plot.

    Every option is passed to `python -m rprm_lite.bench.search` (see `rprm-lite bench search --help`).
    """
    from . import search

    raise typer.Exit(search.main(list(ctx.args)))
