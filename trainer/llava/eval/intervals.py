"""95% intervals for the eval's numbers: Wilson for proportions, a seeded bootstrap for F1 and differences.

Pure functions. A proportion (accuracy, yes-ratio) gets the Wilson score interval, which stays inside [0, 1]
and is sensible at 0/n and n/n, where the normal approximation collapses to a point. POPE's macro F1 has no
closed form, so it gets a percentile bootstrap that resamples the probes within each category (the categories
keep their sizes, as the mean over categories assumes). The difference between two models on the same
questions gets a paired bootstrap (the same resampled questions for both). Bootstraps use a fixed seed, so a
report is reproducible to the digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

Interval = tuple[float, float]


def wilson_interval(successes: int, n: int, z: float = Z_95) -> Interval:
    """Wilson score interval of a binomial proportion; ``(0.0, 1.0)`` when ``n == 0`` (nothing is known)."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Clamp rounding noise: at 0/n the lower end is 0 exactly, at n/n the upper end is 1.
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentile_interval(samples: np.ndarray) -> Interval:
    low, high = np.quantile(samples, [0.025, 0.975])
    return (float(low), float(high))


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    # F1 = 2TP / (2TP + FP + FN); 0 where the denominator is 0, as eval_metrics scores it.
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def bootstrap_macro_f1(
    said_yes: Sequence[bool],
    gold_yes: Sequence[bool],
    categories: Sequence[str],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile interval of the mean-over-categories F1 ("yes" positive), resampling within categories.

    A category is left out of a resample's mean when that resample has no "yes" reference in it, matching
    ``eval_metrics.macro_f1``; with no "yes" reference anywhere the interval is ``(0.0, 0.0)``.
    """
    if not len(said_yes) == len(gold_yes) == len(categories):
        raise ValueError(
            f"length mismatch: {len(said_yes)} answers, {len(gold_yes)} references, {len(categories)} categories"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not said_yes:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    pred = np.asarray(said_yes, dtype=bool)
    gold = np.asarray(gold_yes, dtype=bool)
    cats = np.asarray(categories)
    f1_sum = np.zeros(resamples)
    defined = np.zeros(resamples)
    for category in sorted(set(categories)):
        rows = np.flatnonzero(cats == category)
        picks = rows[rng.integers(0, len(rows), size=(resamples, len(rows)))]  # [R, n_c]
        p, g = pred[picks], gold[picks]
        tp = (p & g).sum(axis=1)
        fp = (p & ~g).sum(axis=1)
        fn = (~p & g).sum(axis=1)
        has_yes = (tp + fn) > 0
        f1_sum += np.where(has_yes, _f1_from_counts(tp, fp, fn), 0.0)
        defined += has_yes
    if not defined.any():
        return (0.0, 0.0)
    means = np.divide(f1_sum, defined, out=np.zeros(resamples), where=defined > 0)
    return _percentile_interval(means[defined > 0])


def bootstrap_paired_difference(
    correct_a: Sequence[bool],
    correct_b: Sequence[bool],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile interval of accuracy(a) - accuracy(b) over the same questions (paired resampling)."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired difference needs the same questions: {len(correct_a)} vs {len(correct_b)}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not correct_a:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    difference = np.asarray(correct_a, dtype=float) - np.asarray(correct_b, dtype=float)
    picks = rng.integers(0, len(difference), size=(resamples, len(difference)))
    return _percentile_interval(difference[picks].mean(axis=1))


def as_json(interval: Interval) -> list[float]:
    """An interval as a JSON pair ``[low, high]``."""
    return [float(interval[0]), float(interval[1])]
