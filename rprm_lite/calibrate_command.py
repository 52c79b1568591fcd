"""`rprm-lite calibrate PREDICTIONS --data DIR`: fit a calibration file on labelled predictions.

A runtime command (numpy only): the fit is `labelled.fit`, the labelled data and predictions `labelled`; the
reliability diagram needs matplotlib (the `bench` extra) and is left out, with a note, where it is not installed.

The file records the model the predictions came from and the LoRA adapters it ran with (sha256 and scale):
from run.json, which `rprm-lite bench` writes beside them, else from --model and --lora. run.json is read
through the runtime's bounded JSON reader and its settings and adapters checked as scoring options are (a NaN
there once went straight into the file as `"k": NaN`); the record written is first checked by the
runtime's own calibration rules (`parse_record`: a decreasing map is refused) and holds only finite
numbers, so `calibrate` never writes a file that scoring would refuse.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from rprm_lite.calibration import (
    FORMAT,
    SCORE_SETTINGS,
    VERSION,
    adapter_identities,
    describe_adapters,
    parse_lora,
    parse_record,
    parse_settings,
)
from rprm_lite.errors import InputError
from rprm_lite.exits import exit_on_error
from rprm_lite.jsonl import read_json_file
from rprm_lite.labelled import fit, prmbench, processbench
from rprm_lite.labelled.records import RUN_FILE, Prediction, read_records
from rprm_lite.markdown import table

app = typer.Typer(add_completion=False, rich_markup_mode=None)
cli_errors = exit_on_error(interrupted="interrupted: nothing was written")
CALIBRATION_FILE = "calibration.json"
DIAGRAM_FILE = "reliability.png"
Pairs = Sequence[tuple[Any, Prediction]]  # (ProcessBench or PRMBench item, its prediction)


@app.command("calibrate")
@cli_errors
def calibrate_command(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS", help="predictions.jsonl of `rprm-lite "
                                                 "bench processbench|prmbench` (or the benchmark's format).")],
    data: Annotated[Path, typer.Option(help="The labelled data: a ProcessBench or PRMBench folder.")],
    out: Annotated[Path, typer.Option(help=f"Folder for {CALIBRATION_FILE} and {DIAGRAM_FILE}.")],
    score_map: Annotated[str, typer.Option("--map", help="isotonic, platt or none.")] = "isotonic",
    model: Annotated[Path | None, typer.Option(help="The model the predictions came from (for its sha256), "
                                               f"when {RUN_FILE} is not beside the predictions.")] = None,
    model_sha256: Annotated[str | None, typer.Option("--model-sha256", help="The model's sha256, instead "
                                                     "of --model.")] = None,
    lora: Annotated[list[str] | None, typer.Option("--lora", metavar="ADAPTER.gguf[:SCALE]", help="A LoRA adapter "
                                                   "the model ran with (repeatable, in order; with --model).")] = None,
    subsets: Annotated[str | None, typer.Option(help="ProcessBench subsets (default: all).")] = None,
    bootstrap: Annotated[int, typer.Option(min=1, help="Resamples for the threshold's interval.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the resamples.")] = 0,
    partial: Annotated[bool, typer.Option(help="Use only the predicted items when some are missing.")] = False,
) -> None:
    """F1-optimal threshold with a bootstrap interval, calibration error, reliability diagram, calibration file."""
    if score_map not in (*fit.MAPS, "none"):
        raise InputError(f"--map must be isotonic, platt or none, got {score_map!r}")
    if not predictions.is_file():
        raise InputError(f"{predictions}: no such file; expected the predictions.jsonl of a benchmark run")
    run = _run_config(predictions)
    sha256, model_name, adapters = _model_identity(run, model, model_sha256, lora or [])
    benchmark, pairs = _pairs(predictions, data, subsets, partial)
    result = calibrate(benchmark, pairs, score_map=None if score_map == "none" else score_map,
                       draws=bootstrap, seed=seed)
    record = {"format": FORMAT, "version": VERSION, "model_sha256": sha256, "model": model_name,
              **({"lora": adapters} if adapters else {}),  # fit on the model alone: the file of before
              "threshold": result.pop("threshold"), "map": result.pop("map"),
              "settings": {key: run[key] for key in SCORE_SETTINGS if key in run},
              "fit": {"predictions": str(predictions), "predictions_sha256": _sha256(predictions),
                      "data": str(data), "benchmark": benchmark, **result}}
    text = calibration_text(record, out / CALIBRATION_FILE)
    out.mkdir(parents=True, exist_ok=True)
    (out / CALIBRATION_FILE).write_text(text, encoding="utf-8")
    diagram = plot_reliability(result["reliability"], out / DIAGRAM_FILE, title=f"{benchmark}: {predictions.name}")
    typer.echo(summary(record))
    typer.echo("\nwrote " + ", ".join(str(path) for path in (out / CALIBRATION_FILE, diagram) if path is not None))
    if diagram is None:
        typer.echo(f"{DIAGRAM_FILE} not drawn: the reliability diagram needs matplotlib; install it with: "
                   "pip install 'rprm-lite[bench]'", err=True)


def calibrate(benchmark: str, pairs: Pairs, *, score_map: str | None, draws: int, seed: int) -> dict[str, Any]:
    """Everything the calibration file records, from (item, prediction) pairs."""
    load = fit.processbench_data if benchmark == "processbench" else fit.prmbench_data
    raw = load(pairs)
    steps, correct = fit.labelled_steps(raw)
    mapping = None if score_map is None else fit.MAPS[score_map](steps, correct)
    scored = raw if mapping is None else load(pairs, mapping)  # the scale the runtime compares
    threshold, metric = fit.best_threshold(scored)
    raw_threshold, raw_metric = fit.best_threshold(raw)
    mapped_steps = steps if mapping is None else np.array([mapping(s) for s in steps])
    metric_name = "average_f1" if benchmark == "processbench" else "prm_score"
    return {
        "threshold": threshold, "map": None if mapping is None else mapping.to_dict(),
        "metric": metric_name, metric_name: metric,
        "threshold_interval": list(fit.bootstrap_interval(scored, draws=draws, seed=seed)),
        "bootstrap": {"draws": draws, "seed": seed, "percentiles": [2.5, 97.5]},
        "raw_threshold": raw_threshold, f"raw_{metric_name}": raw_metric,
        "items": len(scored.scores), "labelled_steps": len(steps), "correct_steps": int(correct.sum()),
        "ece_raw": fit.expected_calibration_error(steps, correct),
        "ece_calibrated_in_sample": fit.expected_calibration_error(mapped_steps, correct),
        "ece_calibrated_cross_fit": (None if score_map is None or len(raw.scores) < 4
                                     else fit.cross_fit_ece(raw, score_map, seed=seed)),
        "reliability": {"raw": fit.reliability(steps, correct), "calibrated": fit.reliability(mapped_steps, correct)},
    }


def _pairs(predictions: Path, data: Path, subsets: str | None, partial: bool) -> tuple[str, Pairs]:
    records = read_records(predictions)
    if not records:
        raise InputError(f"{predictions}: no predictions; expected one JSON object per line")
    if not data.is_dir():
        raise InputError(f"--data {data}: no such folder; expected a ProcessBench or PRMBench folder")
    if any((data / f"{name}.json").is_file() for name in processbench.SUBSETS):
        items = processbench.load_processbench(data, processbench.parse_subsets(subsets))
        parsed, _ = processbench.parse_predictions(records, where=str(predictions))
        return "processbench", processbench.select(items, parsed, partial=partial)
    prm_items = prmbench.load_prmbench(data)
    prm_parsed, _ = prmbench.parse_predictions(records, where=str(predictions))
    return "prmbench", prmbench.select(prm_items, prm_parsed, partial=partial)


def calibration_text(record: dict[str, Any], path: Path) -> str:
    """The file's text, once the runtime would read it back: its rules hold and every number is finite."""
    found = next(non_finite(record), None)
    if found is not None:
        raise InputError(f"{path}: not written: the fit gave {found[1]} for '{found[0]}' (expected a finite number); "
                         "check the predictions and the data")
    parse_record(record, str(path))
    return json.dumps(record, indent=2, allow_nan=False) + "\n"


def non_finite(value: Any, name: str = "") -> Iterator[tuple[str, float]]:
    """(path, value) of each NaN or infinite number in a JSON-like value."""
    if isinstance(value, float) and not math.isfinite(value):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from non_finite(item, f"{name}[{index}]")


def _run_config(predictions: Path) -> dict[str, Any]:
    """The scoring settings run.json records (its `config`), read as untrusted data."""
    path = predictions.parent / RUN_FILE
    if not path.is_file():
        return {}
    run, _ = read_json_file(path, where=str(path))
    config = run.get("config", {}) if isinstance(run, dict) else None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a run.json of `rprm-lite bench` (expected an object with a 'config' object)")
    for key in ("model_sha256", "model"):
        if not isinstance(config.get(key, ""), str):
            raise InputError(f"{path}: config.{key} must be text, got {config[key]!r:.40}")
    parse_settings(config, f"{path}: config")  # the settings the calibration records
    parse_lora(config.get("lora", []), f"{path}: config")  # the adapters it records
    return config


def _model_identity(run: dict[str, Any], model: Path | None, sha256: str | None,
                    lora: list[str]) -> tuple[str, str, list[dict[str, Any]]]:
    """The model's sha256 and name and its adapters' records (file, sha256, scale): from --model and --lora
    (checked against run.json when it names them), else --model-sha256, else run.json."""
    recorded = list(parse_lora(run.get("lora", []), RUN_FILE))
    if lora and model is None:
        raise InputError("--lora needs --model: an adapter is checked against the base model it was applied to")
    if model is not None:
        from rprm_lite.adapter_file import with_adapters
        from rprm_lite.model_file import inspect_model, resolve_model_path

        info = with_adapters(inspect_model(resolve_model_path(model)), lora)
        found = (info.sha256, info.path.name, [adapter.record() for adapter in info.adapters])
    elif sha256 is not None:
        found = (sha256.lower(), "", recorded)
    elif run.get("model_sha256"):
        found = (run["model_sha256"], run.get("model", ""), recorded)
    else:
        raise InputError(f"no {RUN_FILE} beside the predictions names their model; pass --model FILE (or "
                         "--model-sha256) so that the calibration is applied to that model only")
    if len(found[0]) != 64 or any(c not in "0123456789abcdef" for c in found[0]):
        raise InputError(f"--model-sha256: expected 64 hex digits, got {found[0]!r}")
    if run.get("model_sha256") and run["model_sha256"] != found[0]:
        raise InputError(f"the predictions were made with model sha256 {run['model_sha256'][:12]}..., "
                         f"not {found[0][:12]}...")
    if run.get("model_sha256") and adapter_identities(recorded) != adapter_identities(found[2]):
        raise InputError(f"the predictions were made with {describe_adapters(recorded)}, not "
                         f"{describe_adapters(found[2])} (--lora)")
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(record: dict[str, Any]) -> str:
    fitted = record["fit"]
    name = fitted["metric"]
    low, high = fitted["threshold_interval"]
    rows = [("threshold", f"{record['threshold']:.4f} (95% bootstrap {low:.4f}-{high:.4f})"),
            (name, f"{fitted[name]:.1f}"),
            ("raw threshold", f"{fitted['raw_threshold']:.4f} ({name} {fitted['raw_' + name]:.1f})"),
            ("map", record["map"]["kind"] if record["map"] else "none"),
            ("ECE raw", f"{fitted['ece_raw']:.4f}"),
            ("ECE calibrated (in-sample)", f"{fitted['ece_calibrated_in_sample']:.4f}"),
            ("ECE calibrated (2-fold cross-fit)", "n/a" if fitted["ece_calibrated_cross_fit"] is None
             else f"{fitted['ece_calibrated_cross_fit']:.4f}"),
            ("items / labelled steps", f"{fitted['items']} / {fitted['labelled_steps']}")]
    return f"Calibration on {fitted['benchmark']}\n\n" + table(("", "value"), rows)


def plot_reliability(bins: dict[str, list[dict[str, Any]]], path: Path, *, title: str) -> Path | None:
    """The reliability diagram as a PNG; None where matplotlib (the `bench` extra) is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, rows in bins.items():
        axes.plot([r["mean_score"] for r in rows], [r["correct_share"] for r in rows], marker="o", label=name)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="step score", ylabel="share of correct steps", title=title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
