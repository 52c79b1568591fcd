"""Threshold sweep and inference scaling (K) from recorded predictions, without the model.

The sweep re-labels the recorded step scores at each threshold. K-scaling re-scores every step with
K of its recorded critiques, drawn without replacement; each K is drawn `draws` times with a fixed
seed and the mean, min and max of the metric are reported, like the R-PRM paper's figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rprm_lite.errors import InputError
from rprm_lite.labelled.records import Prediction

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
DEFAULT_KS = (1, 2, 4, 8, 16)

Item = TypeVar("Item")
Pairs = Sequence[tuple[Item, Prediction]]
Evaluate = Callable[[Pairs, float], Mapping[str, Any]]  # (pairs, threshold) -> metrics
Headline = Callable[[Mapping[str, Any]], dict[str, float | None]]  # metrics -> numbers to plot


def threshold_sweep(pairs: Pairs, evaluate: Evaluate, headline: Headline,
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """One row per threshold; a threshold the predictions cannot decide gets nulls and a note."""
    rows = []
    for threshold in thresholds:
        try:
            rows.append({"threshold": threshold, **headline(evaluate(pairs, threshold))})
        except InputError as exc:
            rows.append({"threshold": threshold, "note": str(exc)})
    return rows


def k_scaling(pairs: Pairs, evaluate: Evaluate, headline: Headline, *, threshold: float,
              ks: Sequence[int] = DEFAULT_KS, draws: int = 5, seed: int = 0) -> dict[str, Any]:
    """The metric with K critiques per step for each K up to the number recorded."""
    recorded = recorded_k(pairs)
    rows, skipped = [], [k for k in ks if k > recorded]
    for k in (k for k in ks if k <= recorded):
        rng = np.random.default_rng([seed, k])
        n_draws = 1 if k == recorded else draws  # every draw of all critiques is the same
        results = [headline(evaluate([(item, p.with_k(k, rng)) for item, p in pairs], threshold))
                   for _ in range(n_draws)]
        rows.append({"k": k, "draws": n_draws, **_summarize(results)})
    return {"threshold": threshold, "recorded_k": recorded, "seed": seed, "rows": rows, "skipped_ks": skipped}


def recorded_k(pairs: Pairs) -> int:
    """The fewest critiques any scored step has (K-subsampling can go no higher)."""
    counts = [len(step) for _, p in pairs if p.p_yes is not None for step in p.p_yes if step]
    if not counts or any(p.p_yes is None for _, p in pairs):
        raise InputError("K-scaling needs each critique's p_yes per step, as rprm-lite's predictions "
                         "record them; these predictions carry only step scores or labels")
    return min(counts)


def _summarize(results: Sequence[Mapping[str, float | None]]) -> dict[str, dict[str, float | None]]:
    summary = {}
    for name in results[0]:
        values = [r[name] for r in results]
        if None in values:
            summary[name] = {"mean": None, "min": None, "max": None}
        else:
            summary[name] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
    return summary


def without_fixed_labels(pairs: Pairs) -> list[tuple[Any, Prediction]]:
    """Make every prediction re-label from its scores (the sweep must not reuse fixed labels)."""
    missing = [p.id for _, p in pairs if p.scores is None]
    if missing:
        raise InputError(f"{len(missing)} prediction(s) have no step scores (e.g. {', '.join(missing[:3])}); "
                         "a threshold sweep needs per-step scores")
    return [(item, replace(p, labels=None, first_error=None)) for item, p in pairs]


# -- plots (matplotlib is imported only here) -------------------------------------------------------
def plot_threshold(rows: Sequence[Mapping[str, Any]], path: Path, *, title: str, ylabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in _series(rows):
        points = [(r["threshold"], r[name]) for r in rows if r.get(name) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=name,
                    linewidth=2.5 if name in ("average", "overall") else 1.2)
    ax.set(xlabel="threshold", ylabel=ylabel, title=title, xlim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_k_scaling(scaling: Mapping[str, Any], path: Path, *, title: str, ylabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = scaling["rows"]
    for name in _series(rows):
        kept = [r for r in rows if r[name]["mean"] is not None]
        if not kept:
            continue
        ks = [r["k"] for r in kept]
        ax.plot(ks, [r[name]["mean"] for r in kept], marker="o", label=name,
                linewidth=2.5 if name in ("average", "overall") else 1.2)
        ax.fill_between(ks, [r[name]["min"] for r in kept], [r[name]["max"] for r in kept], alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks([r["k"] for r in rows], [str(r["k"]) for r in rows])
    ax.set(xlabel="critiques per step (K)", ylabel=ylabel,
           title=f"{title} (threshold {scaling['threshold']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _series(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    skip = {"threshold", "k", "draws", "note"}
    return list(dict.fromkeys(key for row in rows for key in row if key not in skip))


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'rprm-lite[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
