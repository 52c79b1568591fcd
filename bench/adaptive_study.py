"""Adaptive K, trace-driven: replay recorded critique values under stopping rules, without the model.

    rprm-lite bench adaptive-study --out DIR [--prmbench-scores FILE --prmbench-data DIR]
                                   [--processbench-predictions FILE --processbench-data DIR]
                                   [--permutations 100] [--wave 2] [--threshold 0.5] [--seed 0]

Two kinds of trace:
- `prmbench`: R-PRM-7B's released PRMBench scores, each step's vote share of 10 sampled critiques
  (m/10). A replay puts the m Yes and 10 - m No votes in a random order.
- `processbench`: predictions of `rprm-lite bench processbench`, which record each critique's P(Yes).
  A replay puts the recorded critiques of each step in a random order.
Each replay (`permutations` orders per step, seeded) draws critiques in waves of `wave` and stops a
step when a rule of `rprm_lite.adaptive` (the runtime's own code) settles it, else at K. The step's
score is the mean of the critiques drawn. Reported per rule and confidence: critiques used per step
(mean, and as a share of K) and the metric (PRMBench: overall PRMScore, steps labelled correct when
the score is above the threshold; ProcessBench: average F1) averaged over the replays, with its loss
against fixed K (every recorded critique). Fixed K = 2, 4, 6 (random subsets) are there for scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rprm_lite import adaptive
from rprm_lite.errors import InputError
from rprm_lite.labelled import prmbench, processbench
from rprm_lite.labelled.records import read_records
from rprm_lite.markdown import table

from .report_files import write_report

# (rule, confidence) rows; "fixed" rows draw that many critiques per step
GRID: tuple[tuple[str, float], ...] = (
    ("beta", 0.8), ("beta", 0.9), ("beta", 0.95), ("beta", 0.99),
    ("betting", 0.6), ("betting", 0.7), ("betting", 0.8), ("betting", 0.9),
    ("window", 0.8), ("window", 0.9), ("window", 0.95), ("window", 0.99),
    ("fixed", 2), ("fixed", 4), ("fixed", 6),
)
VOTES = 10  # critiques behind a released PRMBench vote share (a few steps have fewer, 16 have 20)
MAX_VOTES = 20


@dataclass(frozen=True)
class Trace:
    """Recorded critique values, one row per step, and the metric of a vector of step scores."""

    name: str
    values: np.ndarray  # (steps, K), each in [0, 1]
    metric: Callable[[np.ndarray], float]
    metric_name: str
    correct: Callable[[np.ndarray], np.ndarray]  # step scores -> the steps judged correct
    reference: float | None = None  # the benchmark module's own metric at fixed K, as a check


# -- replaying ---------------------------------------------------------------------------------------
def replay(values: np.ndarray, order: np.ndarray, *, rule: str, level: float, threshold: float,
           wave: int) -> tuple[np.ndarray, np.ndarray]:
    """Critiques used and the score of each step when its critiques come in the order `order`
    (per row, a permutation of its columns that puts missing critiques, NaN, last): waves of `wave`,
    stopping when `rule` settles the step or its recorded critiques run out."""
    steps, k = values.shape
    drawn = np.take_along_axis(values, order, axis=1)
    counts = np.sum(~np.isnan(values), axis=1)
    if rule == "fixed":
        used = np.minimum(counts, int(level))
    else:
        used = counts.copy()
        open_rows = np.arange(steps)
        for n in range(wave, k, wave):  # after the last wave every step stops anyway
            open_rows = open_rows[counts[open_rows] > n]  # the others end with this wave: used = counts
            side = adaptive.settled(drawn[open_rows, :n], rule=rule, threshold=threshold, confidence=level)
            used[open_rows[side != adaptive.UNSETTLED]] = n
            open_rows = open_rows[side == adaptive.UNSETTLED]
            if not open_rows.size:
                break
    totals = np.nancumsum(drawn, axis=1)[np.arange(steps), used - 1]
    return used, totals / used


def random_orders(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """A random order of each row's critiques, missing ones (NaN) last."""
    keys = np.where(np.isnan(values), np.inf, rng.random(values.shape))
    return np.argsort(keys, axis=1)


def study(trace: Trace, *, permutations: int, wave: int, threshold: float, seed: int,
          grid: Sequence[tuple[str, float]] = GRID) -> dict[str, Any]:
    """Every grid row on one trace; the same orders are used for every row (paired comparison)."""
    steps, k = trace.values.shape
    fixed_scores = np.nanmean(trace.values, axis=1)
    baseline, fixed_verdicts = trace.metric(fixed_scores), trace.correct(fixed_scores)
    recorded = float(np.mean(np.sum(~np.isnan(trace.values), axis=1)))
    rng = np.random.default_rng(seed)
    orders = [random_orders(rng, trace.values) for _ in range(permutations)]
    rows = []
    for rule, level in grid:
        if rule == "fixed" and level >= k:
            continue
        used_means, metrics, changed = [], [], []
        for order in orders:
            used, scores = replay(trace.values, order, rule=rule, level=level, threshold=threshold, wave=wave)
            used_means.append(float(used.mean()))
            metrics.append(trace.metric(scores))
            changed.append(float(np.mean(trace.correct(scores) != fixed_verdicts)))
        rows.append({"rule": rule, "confidence": level if rule != "fixed" else None,
                     "k": int(level) if rule == "fixed" else None,
                     "window": adaptive.window_length(level) if rule == "window" else None,
                     "critiques_mean": float(np.mean(used_means)), "share_of_k": float(np.mean(used_means)) / recorded,
                     "metric_mean": float(np.mean(metrics)), "metric_min": float(np.min(metrics)),
                     "metric_max": float(np.max(metrics)), "loss": baseline - float(np.mean(metrics)),
                     "verdicts_changed": float(np.mean(changed))})
    return {"trace": trace.name, "metric": trace.metric_name, "steps": steps, "k": k, "recorded_mean": recorded,
            "fixed_k_metric": baseline, "benchmark_code_metric": trace.reference, "rows": rows}


# -- metrics, vectorized over steps -----------------------------------------------------------------
def prm_score(wrong_step: np.ndarray, threshold: float) -> Callable[[np.ndarray], float]:
    """Overall PRMScore (pooled over every step) of step scores; a step is labelled correct when its
    score is above the threshold, as rprm_lite/labelled/prmbench.py labels scores."""
    def metric(scores: np.ndarray) -> float:
        labelled_correct = scores > threshold
        tp = np.sum(labelled_correct & ~wrong_step)
        fp = np.sum(labelled_correct & wrong_step)
        tn = np.sum(~labelled_correct & wrong_step)
        fn = np.sum(~labelled_correct & ~wrong_step)
        return float(50 * (2 * tp / (2 * tp + fp + fn)) + 50 * (2 * tn / (2 * tn + fn + fp)))
    return metric


def average_f1(item_of_step: np.ndarray, step_in_item: np.ndarray, labels: np.ndarray, subsets: np.ndarray,
               threshold: float) -> Callable[[np.ndarray], float]:
    """ProcessBench's average F1 of step scores: an item's predicted first error is its first step
    scored below the threshold, else -1 (items in `labels` order, steps grouped by item in order)."""
    n_items = len(labels)
    names = sorted(set(subsets.tolist()))

    def metric(scores: np.ndarray) -> float:
        first = np.full(n_items, np.iinfo(np.int64).max)
        wrong = scores < threshold
        np.minimum.at(first, item_of_step[wrong], step_in_item[wrong])
        predicted = np.where(first == np.iinfo(np.int64).max, -1, first)
        f1s = []
        for name in names:
            mine = subsets == name
            has_error = labels != -1
            error_acc = 100 * np.mean(predicted[mine & has_error] == labels[mine & has_error])
            correct_acc = 100 * np.mean(predicted[mine & ~has_error] == -1)
            f1s.append(2 * error_acc * correct_acc / (error_acc + correct_acc) if error_acc + correct_acc else 0.0)
        return float(np.mean(f1s))
    return metric


# -- traces ------------------------------------------------------------------------------------------
def prmbench_trace(scores_file: Path, data: Path, threshold: float) -> Trace:
    """R-PRM's released PRMBench vote shares as votes per step (1 or 0; NaN past a step's count)."""
    items = prmbench.load_prmbench(data)
    predictions, _ = prmbench.parse_predictions(read_records(scores_file), where=str(scores_file))
    pairs = [(item, p) for item, p in prmbench.select(items, predictions) if p.valid]
    shares, wrong = [], []
    for item, prediction in pairs:
        if prediction.scores is None or None in prediction.scores:
            raise InputError(f"{scores_file}: {item.id} has no score for every step; expected vote shares")
        shares += prediction.scores
        wrong += [number in item.error_steps for number in range(1, len(prediction.scores) + 1)]
    counts = np.asarray([vote_count(share) for share in shares])
    yes = np.rint(np.asarray(shares) * counts).astype(int)
    columns = np.arange(counts.max())[None, :]
    # m Yes votes, then the No votes, then NaN for critiques the released run did not record
    values = np.where(columns < counts[:, None], (columns < yes[:, None]).astype(float), np.nan)
    reference = prmbench.evaluate(pairs, threshold)["overall"]["prm_score"]
    return Trace("prmbench (R-PRM-7B, released votes)", values, prm_score(np.asarray(wrong), threshold),
                 "PRMScore", lambda scores: scores > threshold, reference)


def processbench_trace(predictions_file: Path, data: str | Path, threshold: float,
                       subsets: str | None = None) -> Trace:
    """Each recorded critique's P(Yes) from `rprm-lite bench processbench` predictions (every step scored)."""
    items = processbench.load_processbench(data, processbench.parse_subsets(subsets))
    predictions, _ = processbench.parse_predictions(read_records(predictions_file), where=str(predictions_file))
    pairs = processbench.select(items, predictions, partial=True)
    rows, item_of_step, step_in_item = [], [], []
    for number, (item, prediction) in enumerate(pairs):
        if prediction.p_yes is None or len(prediction.p_yes) != len(item.steps) or not all(prediction.p_yes):
            raise InputError(f"{predictions_file}: {item.id} lacks per-critique p_yes for every step; "
                             "score with --all-steps (the default of bench processbench)")
        rows += [list(step) for step in prediction.p_yes]
        item_of_step += [number] * len(item.steps)
        step_in_item += range(len(item.steps))
    if not rows:
        raise InputError(f"{predictions_file}: no predictions for the items of {data}")
    k = min(len(row) for row in rows)
    if k < 2:
        raise InputError(f"{predictions_file}: adaptive K needs at least 2 critiques per step, found {k}")
    values = np.asarray([row[:k] for row in rows], dtype=float)
    metric = average_f1(np.asarray(item_of_step), np.asarray(step_in_item),
                        np.asarray([item.label for item, _ in pairs]), np.asarray([i.subset for i, _ in pairs]),
                        threshold)
    reference = processbench.evaluate(pairs, threshold)["average_f1"] if k == max(map(len, rows)) else None
    return Trace(f"processbench ({predictions_file.parent.name})", values, metric, "average F1",
                 lambda scores: scores >= threshold, reference)


def vote_count(share: float) -> int:
    """How many votes a released vote share was taken over: the most, up to 10, that make it a whole
    number of Yes votes, else up to 20 (about 3% of the released steps have 9 or 8 recorded critiques,
    16 have 20)."""
    for count in (*range(VOTES, 0, -1), *range(VOTES + 1, MAX_VOTES + 1)):
        if abs(share * count - round(share * count)) < 1e-6:
            return count
    raise InputError(f"step score {share!r} is not a vote share of at most {MAX_VOTES} critiques")


# -- report --------------------------------------------------------------------------------------------
def report_table(results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    parts = [f"## Adaptive K, trace-driven ({settings['permutations']} random critique orders per step, seed "
             f"{settings['seed']}, waves of {settings['wave']}, threshold {settings['threshold']})"]
    for result in results:
        check = ("" if result["benchmark_code_metric"] is None else
                 f"; the benchmark's own code gives {result['benchmark_code_metric']:.2f}")
        rows = [(_rule_name(row), f"{row['critiques_mean']:.2f}", f"{100 * row['share_of_k']:.0f}%",
                 f"{row['metric_mean']:.2f}", f"{row['loss']:+.2f}",
                 f"{row['metric_min']:.2f} .. {row['metric_max']:.2f}", f"{100 * row['verdicts_changed']:.2f}%")
                for row in result["rows"]]
        parts.append(f"### {result['trace']}: {result['steps']} steps; fixed K (every recorded critique, "
                     f"{result['recorded_mean']:.2f} per step, at most {result['k']}): "
                     f"{result['metric']} {result['fixed_k_metric']:.2f}{check}\n\n"
                     + table(("rule", "critiques/step", "share of fixed K", result["metric"], "loss vs fixed K",
                              "range over orders", "step verdicts changed"), rows))
    return "\n\n".join(parts) + "\n"


def _rule_name(row: dict[str, Any]) -> str:
    if row["rule"] == "fixed":
        return f"fixed K={row['k']}"
    extra = f", w={row['window']}" if row["rule"] == "window" else ""
    return f"{row['rule']} c={row['confidence']:g}{extra}"


def plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    from .sweeps import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for rule in dict.fromkeys(row["rule"] for row in result["rows"]):
            rows = [row for row in result["rows"] if row["rule"] == rule]
            ax.plot([r["critiques_mean"] for r in rows], [r["loss"] for r in rows], marker="o",
                    linestyle=":" if rule == "fixed" else "-", label=rule)
            for row in rows:
                ax.annotate(f"{row['confidence']:g}" if rule != "fixed" else f"K={row['k']}",
                            (row["critiques_mean"], row["loss"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        ax.set(xlabel="critiques per step (mean)", ylabel=f"{result['metric']} lost vs fixed K",
               title=result["trace"], xlim=(0, result["recorded_mean"] + 0.5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, plt, path)


def run_study(traces: Sequence[Trace], out: Path, *, permutations: int, wave: int, threshold: float,
              seed: int) -> dict[str, Any]:
    if not traces:
        raise InputError("no trace to replay: give --prmbench-scores with --prmbench-data, and/or "
                         "--processbench-predictions with --processbench-data")
    if permutations < 1 or wave < 1:
        raise InputError(f"--permutations and --wave must be at least 1, got {permutations} and {wave}")
    started = time.perf_counter()
    settings = {"permutations": permutations, "wave": wave, "threshold": threshold, "seed": seed}
    results = [study(trace, permutations=permutations, wave=wave, threshold=threshold, seed=seed)
               for trace in traces]
    report = {"settings": settings, "traces": results, "seconds": time.perf_counter() - started}
    write_report(out, "adaptive_study", report, report_table(results, settings))
    print(f"wrote {plot(results, out / 'adaptive_study.png')}")
    return report

