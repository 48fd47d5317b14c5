"""Telling variants of a recipe apart with stated confidence: intervals over training seeds and over images,
paired differences against a baseline and a verdict. Pure NumPy/SciPy, no files and no printing.

The unit of replication is the training seed: a seed moves a model's scores more than the choices the
benchmark judges, so a verdict rests on the per-seed values of each variant, paired by seed (variant and
baseline trained with the same seeds see the same data order and noise). The interval of the mean
difference is Student's t over the K paired differences; a difference is *real* when that interval excludes
zero. The bootstrap over images describes how much the held-out set alone moves a score; it never decides
a verdict.
"""

from typing import NamedTuple

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000

BETTER, WORSE, SAME = "better", "worse", "no significant difference"


class Interval(NamedTuple):
    """A mean with the bounds of its confidence interval (NaN where ``n`` < 2 leaves none)."""
    mean: float
    low: float
    high: float
    n: int

    def excludes(self, value):
        return bool(self.low > value or self.high < value)


def seed_interval(values, confidence=CONFIDENCE):
    """Mean and Student-t interval of per-seed values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, float("nan"), float("nan"), 1)
    half = stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return Interval(mean, float(mean - half), float(mean + half), int(v.size))


def bootstrap_interval(per_image, confidence=CONFIDENCE, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """Mean and percentile interval when the held-out images are drawn again: ``per_image`` is (images,) or
    (seeds, images); images are resampled as whole columns (every seed's value of an image together)."""
    a = np.asarray(per_image, dtype=np.float64)
    a = a[None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"per_image must be (images,) or (seeds, images), got shape {a.shape}")
    column_means = a.mean(axis=0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, column_means.size, size=(resamples, column_means.size))
    means = column_means[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(column_means.mean()), float(low), float(high), int(column_means.size))


class Verdict(NamedTuple):
    """The variant's difference to the baseline (variant - baseline, per seed) and what it means."""
    difference: Interval
    verdict: str


def paired_verdict(baseline, variant, higher_is_better=True, confidence=CONFIDENCE):
    """Compare per-seed values of ``variant`` with ``baseline``'s (same seeds, same order)."""
    b = np.asarray(baseline, dtype=np.float64).ravel()
    v = np.asarray(variant, dtype=np.float64).ravel()
    if b.shape != v.shape:
        raise ValueError(f"paired values need the same seeds: {b.size} baseline values, {v.size} variant values")
    diff = seed_interval(v - b, confidence)
    if diff.n < 2 or not diff.excludes(0.0):
        return Verdict(diff, SAME)
    improved = (diff.mean > 0) == higher_is_better
    return Verdict(diff, BETTER if improved else WORSE)
