"""Adaptive K: stop drawing critiques once a step's verdict is settled.

A step's score is the mean of its critiques' values (each critique's P(Yes), in [0, 1]; a plain
Yes/No vote is 1 or 0), and the step is wrong when the score is below the threshold t. With
adaptive K the critiques come in waves; after each wave a stopping rule looks at the n values so
far and says whether the mean is settled above or below t with confidence c:

- `beta` (Adaptive-Consistency, Aggarwal et al. 2023): a Beta(1 + S, 1 + n - S) posterior on the
  mean, S the sum of the values (a P(Yes) counts as a fractional vote); settled when
  P(mean > t) >= c or P(mean < t) >= c.
- `betting` (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by betting"):
  the hedged-capital confidence sequence with predictable plug-in bets (truncated at 3/4), valid at
  every n at once for any distribution on [0, 1], so stopping after any wave keeps its guarantee;
  settled when the sequence at level 1 - c excludes t.
- `window` (Early-Stopping Self-Consistency, Li et al. 2024): settled when the last w values all lie
  on the same side of t, with w = ceil(log2(1 / (1 - c))) (5 at c = 0.95): the chance that w fair
  coin flips all land on a given side is at most 1 - c.

Confidence 1 never settles, so every step then draws all K critiques exactly as fixed K does.
The rules are vectorized with numpy over many sequences at once: the runtime asks about one
sequence, the trace-driven study (`rprm_lite.bench.adaptive_study`) about millions, with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

RULES: tuple[str, ...] = ("beta", "betting", "window")
ABOVE, BELOW, UNSETTLED = 1, -1, 0
SETTLED = "settled"  # stop reasons reported per step
REACHED_K = "reached-k"
BET_TRUNCATION = 0.75  # Waudby-Smith & Ramdas suggest 1/2 or 3/4; 3/4 settles sooner on few samples
CF_ITERATIONS = 200  # continued fraction of the incomplete beta: converges in far fewer for n <= 255
_TINY = 1e-300


def decide(values: Sequence[float], *, rule: str, threshold: float, confidence: float) -> int:
    """ABOVE, BELOW or UNSETTLED for one step's values so far."""
    return int(settled(np.asarray([values], dtype=float), rule=rule, threshold=threshold,
                       confidence=confidence)[0])


def settled(values: np.ndarray, *, rule: str, threshold: float, confidence: float) -> np.ndarray:
    """For each row of `values` (shape (rows, n), every value in [0, 1]): ABOVE, BELOW or UNSETTLED."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-d array (rows, n), got shape {values.shape}")
    if confidence >= 1 or values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=np.int8)
    if rule == "beta":
        return _beta(values, threshold, confidence)
    if rule == "betting":
        return _betting(values, threshold, confidence)
    if rule == "window":
        return _window(values, threshold, confidence)
    raise ValueError(f"unknown stopping rule {rule!r}; expected one of {', '.join(RULES)}")


def window_length(confidence: float) -> int:
    return max(1, math.ceil(math.log2(1 / (1 - confidence)) - 1e-12))


# -- beta posterior --------------------------------------------------------------------------------
def _beta(values: np.ndarray, threshold: float, confidence: float) -> np.ndarray:
    n = values.shape[1]
    sums = values.sum(axis=1)
    # many rows share a sum (every vote sequence with s Yes of n): compute each distinct one once
    distinct, inverse = np.unique(sums, return_inverse=True)
    below = beta_cdf(threshold, 1 + distinct, 1 + n - distinct)[inverse.reshape(-1)]  # P(mean < t)
    return np.where(below >= confidence, BELOW, np.where(1 - below >= confidence, ABOVE, UNSETTLED)).astype(np.int8)


def beta_cdf(x: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes' continued fraction)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x <= 0:
        return np.zeros_like(a)
    if x >= 1:
        return np.ones_like(a)
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    front = np.exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    direct = x < (a + 1) / (a + b + 2)  # where the fraction converges fast; else use the symmetry
    a_, b_ = np.where(direct, a, b), np.where(direct, b, a)
    x_ = np.where(direct, x, 1 - x)
    part = front * _beta_fraction(a_, b_, x_) / a_
    value: np.ndarray = np.where(direct, part, 1 - part)
    return value


def _beta_fraction(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    def guard(v: np.ndarray) -> np.ndarray:
        return np.where(np.abs(v) < _TINY, _TINY, v)

    c = np.ones_like(a)
    d = 1 / guard(1 - (a + b) * x / (a + 1))
    h: np.ndarray = d.copy()
    for m in range(1, CF_ITERATIONS + 1):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 / guard(1 + aa * d)
            c = guard(1 + aa / c)
            h = h * d * c
        if np.all(np.abs(d * c - 1) < 1e-15):
            break
    return h


# -- betting confidence sequence -------------------------------------------------------------------
def _betting(values: np.ndarray, threshold: float, confidence: float) -> np.ndarray:
    """Hedged capital (theta = 1/2) for the candidate mean m = t: t leaves the sequence once
    max(K+/2, K-/2) >= 1/alpha; K+ grows when values exceed t (the mean is above), K- when below."""
    alpha = 1 - confidence
    rows, n = values.shape
    log_up, log_down = np.zeros(rows), np.zeros(rows)
    total, spread = np.zeros(rows), np.full(rows, 0.25)  # running sums behind the plug-in estimates
    var_before = np.full(rows, 0.25)
    for i in range(1, n + 1):
        x = values[:, i - 1]
        bet = np.sqrt(2 * math.log(2 / alpha) / (var_before * i * math.log(1 + i)))
        up = np.minimum(bet, BET_TRUNCATION / threshold) if threshold > 0 else bet
        down = np.minimum(bet, BET_TRUNCATION / (1 - threshold)) if threshold < 1 else bet
        log_up += np.log1p(up * (x - threshold))
        log_down += np.log1p(-down * (x - threshold))
        total += x
        mean_now = (0.5 + total) / (i + 1)
        spread += (x - mean_now) ** 2
        var_before = spread / (i + 1)
    bar = math.log(2 / alpha)  # theta * capital >= 1 / alpha, theta = 1/2
    return np.where(log_up >= bar, ABOVE, np.where(log_down >= bar, BELOW, UNSETTLED)).astype(np.int8)


# -- window ------------------------------------------------------------------------------------------
def _window(values: np.ndarray, threshold: float, confidence: float) -> np.ndarray:
    width = window_length(confidence)
    if values.shape[1] < width:
        return np.zeros(values.shape[0], dtype=np.int8)
    last = values[:, -width:] >= threshold  # a critique's vote: not wrong when its value reaches t
    return np.where(last.all(axis=1), ABOVE, np.where((~last).all(axis=1), BELOW, UNSETTLED)).astype(np.int8)
