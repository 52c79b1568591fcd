"""Fitting a calibration from labelled predictions: the F1-optimal threshold (with a bootstrap interval),
expected calibration error, and a monotone map from the raw step score to P(step is correct).

The threshold is the one that maximizes the benchmark's own headline metric:
- ProcessBench: the mean over subsets of F1 (harmonic mean of error and correct accuracy), the first
  error being the first step scoring below the threshold. An item with first error at step L is matched
  for thresholds in (score[L], min(score[:L])], a correct item for thresholds up to its lowest score.
- PRMBench: the overall PRMScore over every step (0.5 * F1 of correct steps + 0.5 * F1 of wrong ones).
The metric only changes at observed scores, so the candidates are 0, the midpoints between consecutive
distinct step scores, and a point above the largest; of equally good candidates the one nearest the
released default 0.5 wins (then the lower). The interval: the same search on items resampled with
replacement (seeded), its 2.5th and 97.5th percentiles.
Step labels for the map and the calibration error: PRMBench labels every step; in ProcessBench the steps
before the first error are correct, the first error is wrong, and later steps carry no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rprm_lite.calibration import ScoreMap
from rprm_lite.errors import InputError

from .prmbench import PRMBenchItem
from .processbench import ProcessBenchItem
from .records import Prediction

DEFAULT_BINS = 10


@dataclass(frozen=True)
class ProcessBenchData:
    """Per item: its subset's number, whether it has an error, its step scores and its label."""

    subsets: np.ndarray  # int, per item
    has_error: np.ndarray  # bool, per item
    scores: list[np.ndarray]  # per item, its step scores (every step scored)
    labels: np.ndarray  # int, per item: 0-based first wrong step, -1 for none


@dataclass(frozen=True)
class PRMBenchData:
    scores: list[np.ndarray]  # per item
    correct: list[np.ndarray]  # per item, bool per step


LabelledData = ProcessBenchData | PRMBenchData


def processbench_data(pairs: Sequence[tuple[ProcessBenchItem, Prediction]],
                      score_map: ScoreMap | None = None) -> ProcessBenchData:
    names = sorted({item.subset for item, _ in pairs})
    scores = [_item_scores(item, prediction, score_map) for item, prediction in pairs]
    return ProcessBenchData(subsets=np.array([names.index(item.subset) for item, _ in pairs]),
                            has_error=np.array([item.label != -1 for item, _ in pairs]),
                            scores=scores, labels=np.array([item.label for item, _ in pairs]))


def prmbench_data(pairs: Sequence[tuple[PRMBenchItem, Prediction]],
                  score_map: ScoreMap | None = None) -> PRMBenchData:
    valid = [(item, p) for item, p in pairs if p.valid]
    scores = [_item_scores(item, prediction, score_map) for item, prediction in valid]
    correct = [np.array([n not in item.error_steps for n in range(1, len(s) + 1)]) for (item, _), s in
               zip(valid, scores, strict=True)]
    return PRMBenchData(scores=scores, correct=correct)


def _item_scores(item: ProcessBenchItem | PRMBenchItem, prediction: Prediction,
                 score_map: ScoreMap | None) -> np.ndarray:
    values = prediction.scores
    if values is None or None in values:
        raise InputError(f"{prediction.id}: calibration needs a score for every step (predictions with "
                         "per-step scores, made with --all-steps)")
    if len(values) != len(item.steps):
        raise InputError(f"{prediction.id}: {len(values)} step scores for an item with {len(item.steps)} steps")
    array = np.array(values, dtype=float)
    return array if score_map is None else np.array([score_map(v) for v in array])


# -- the metric as a function of the threshold ------------------------------------------------------------
def candidates(scores: np.ndarray) -> np.ndarray:
    distinct = np.unique(scores)
    above = [(distinct[-1] + 1) / 2] if len(distinct) and distinct[-1] < 1 else []
    return np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, above])


def processbench_f1(data: ProcessBenchData, thresholds: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Mean over subsets of F1 (percent) at each threshold; `rows` picks (resampled) items."""
    rows = np.arange(len(data.labels)) if rows is None else rows
    low = np.full(len(rows), -np.inf)
    high = np.empty(len(rows))
    for n, row in enumerate(rows):
        scores, label = data.scores[row], data.labels[row]
        if label == -1:
            high[n] = scores.min()
        else:
            low[n] = scores[label]
            high[n] = scores[:label].min() if label else np.inf
    f1s = []
    for subset in np.unique(data.subsets[rows]):
        errors, corrects = _matches(low, high, thresholds, data.subsets[rows] == subset, data.has_error[rows])
        if errors is None or corrects is None:
            continue  # a subset without items of both kinds has no F1
        total = errors + corrects
        f1s.append(np.divide(2 * errors * corrects, total, out=np.zeros_like(total), where=total > 0))
    if not f1s:
        raise InputError("calibration needs solutions with an error and solutions without one in a subset")
    mean: np.ndarray = np.mean(f1s, axis=0)
    return mean


def _matches(low: np.ndarray, high: np.ndarray, thresholds: np.ndarray, in_subset: np.ndarray,
             has_error: np.ndarray) -> list[np.ndarray | None]:
    """Error and correct accuracy (percent) of one subset at each threshold (None without such items)."""
    result: list[np.ndarray | None] = []
    for kind in (True, False):
        chosen = in_subset & (has_error == kind)
        if not chosen.any():
            result.append(None)
            continue
        lo, hi = low[chosen], high[chosen]
        lo, hi = np.sort(lo[lo < hi]), np.sort(hi[lo < hi])  # an empty interval matches at no threshold
        matched = np.searchsorted(lo, thresholds, "left") - np.searchsorted(hi, thresholds, "left")
        result.append(100 * matched / chosen.sum())
    return result


def prmbench_score(data: PRMBenchData, thresholds: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Overall PRMScore (percent) at each threshold: a step is labelled correct when its score is above."""
    rows = np.arange(len(data.scores)) if rows is None else rows
    scores = np.concatenate([data.scores[r] for r in rows])
    correct = np.concatenate([data.correct[r] for r in rows])
    right, wrong = np.sort(scores[correct]), np.sort(scores[~correct])
    tp = len(right) - np.searchsorted(right, thresholds, "right")
    fp = len(wrong) - np.searchsorted(wrong, thresholds, "right")
    fn, tn = len(right) - tp, len(wrong) - fp
    positive = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(thresholds)), where=2 * tp + fp + fn > 0)
    negative = np.divide(2 * tn, 2 * tn + fn + fp, out=np.zeros(len(thresholds)), where=2 * tn + fn + fp > 0)
    score: np.ndarray = 100 * (positive + negative) / 2
    return score


def best_threshold(data: LabelledData, rows: np.ndarray | None = None) -> tuple[float, float]:
    """The threshold that maximizes the metric (ties: nearest 0.5, then the lower) and its value."""
    pick = range(len(data.scores)) if rows is None else rows
    thresholds = candidates(np.concatenate([data.scores[r] for r in pick]))
    metric = (processbench_f1(data, thresholds, rows) if isinstance(data, ProcessBenchData)
              else prmbench_score(data, thresholds, rows))
    best = np.flatnonzero(metric >= metric.max() - 1e-9)
    chosen = min(best, key=lambda i: (abs(thresholds[i] - 0.5), thresholds[i]))
    return float(thresholds[chosen]), float(metric[chosen])


def bootstrap_interval(data: LabelledData, *, draws: int, seed: int) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the best threshold over `draws` resamples of the items."""
    rng = np.random.default_rng(seed)
    n = len(data.scores)
    values = [best_threshold(data, rng.integers(0, n, size=n))[0] for _ in range(draws)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# -- step labels, calibration error and the map ---------------------------------------------------------
def labelled_steps(data: LabelledData) -> tuple[np.ndarray, np.ndarray]:
    """(scores, correct) of every step that has a label."""
    if isinstance(data, PRMBenchData):
        return np.concatenate(data.scores), np.concatenate(data.correct)
    scores, correct = [], []
    for item_scores, label in zip(data.scores, data.labels, strict=True):
        end = len(item_scores) if label == -1 else label + 1
        scores.append(item_scores[:end])
        correct.append(np.arange(end) != label)
    return np.concatenate(scores), np.concatenate(correct)


def reliability(scores: np.ndarray, correct: np.ndarray, bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """Equal-width bins of the score: count, mean score and share of correct steps."""
    which = np.minimum((scores * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": b / bins, "high": (b + 1) / bins, "count": int(inside.sum()),
                         "mean_score": float(scores[inside].mean()), "correct_share": float(correct[inside].mean())})
    return rows


def expected_calibration_error(scores: np.ndarray, correct: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Sum over bins of (share of steps) * |share correct - mean score|."""
    return float(sum(row["count"] * abs(row["correct_share"] - row["mean_score"])
                     for row in reliability(scores, correct, bins)) / len(scores))


def fit_isotonic(scores: np.ndarray, correct: np.ndarray) -> ScoreMap:
    """Pool-adjacent-violators on the distinct scores; knots at each block's first and last score."""
    xs, inverse = np.unique(scores, return_inverse=True)
    weights = np.bincount(inverse).astype(float)
    sums = np.bincount(inverse, weights=correct.astype(float))
    blocks: list[list[float]] = []  # [sum, weight, first x, last x]
    for x, s, w in zip(xs, sums, weights, strict=True):
        blocks.append([s, w, x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s2, w2, _, last = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += w2
            blocks[-1][3] = last
    knots_x, knots_y = [], []
    for s, w, first, last in blocks:
        for x in dict.fromkeys((first, last)):
            knots_x.append(float(x))
            knots_y.append(float(s / w))
    return ScoreMap("isotonic", x=tuple(knots_x), y=tuple(knots_y))


def fit_platt(scores: np.ndarray, correct: np.ndarray, iterations: int = 50) -> ScoreMap:
    """Logistic regression of correctness on the score (Newton's method), with Platt's smoothed targets."""
    positives, negatives = correct.sum(), (~correct).sum()
    target = np.where(correct, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    a, b = 0.0, 0.0
    design = np.stack([scores, np.ones_like(scores)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * scores + b)))
        gradient = design.T @ (p - target)
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return ScoreMap("platt", a=float(a), b=float(b))


MAPS = {"isotonic": fit_isotonic, "platt": fit_platt}


def cross_fit_ece(data: LabelledData, kind: str, *, seed: int, bins: int = DEFAULT_BINS) -> float:
    """ECE of the map on held-out items: fit on one half of the items, measured on the other, both ways
    (the in-sample ECE of an isotonic map is close to 0 by construction)."""
    order = np.random.default_rng(seed).permutation(len(data.scores))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    scores, correct = [], []
    for fit_rows, test_rows in (halves, halves[::-1]):
        fit_scores, fit_correct = labelled_steps(_subset(data, fit_rows))
        test_scores, test_correct = labelled_steps(_subset(data, test_rows))
        mapping = MAPS[kind](fit_scores, fit_correct)
        scores.append(np.array([mapping(s) for s in test_scores]))
        correct.append(test_correct)
    return expected_calibration_error(np.concatenate(scores), np.concatenate(correct), bins)


def _subset(data: LabelledData, rows: np.ndarray) -> LabelledData:
    if isinstance(data, PRMBenchData):
        return PRMBenchData(scores=[data.scores[r] for r in rows], correct=[data.correct[r] for r in rows])
    return ProcessBenchData(subsets=data.subsets[rows], has_error=data.has_error[rows],
                            scores=[data.scores[r] for r in rows], labels=data.labels[rows])
