"""Clutter-removal metrics: success and completion rates with confidence intervals.

- SR (GSR in the pile protocol) = successful attempts / attempts, pooled over trials, with a
  Wilson score interval;
- CR (DR) = objects removed by the gripper / objects in the bin at the start, pooled over
  trials, with a percentile bootstrap interval over trials (and the per-trial mean with a
  Student-t interval).

Every rate with a zero denominator is NaN, never a division error.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["bootstrap_ratio_interval", "rate", "t_interval", "wilson_interval"]


def rate(numerator: float, denominator: float) -> float:
    """Return numerator / denominator, NaN when the denominator is 0.

    :param numerator: e.g. successes.
    :param denominator: e.g. attempts.
    :return: the ratio or NaN.
    """
    return float(numerator) / float(denominator) if denominator else math.nan


def wilson_interval(successes: int, trials: int,
                    confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    :param successes: successes k, 0 <= k <= n.
    :param trials: trials n.
    :param confidence: confidence level in (0, 1).
    :return: ``(low, high)``; ``(nan, nan)`` when n = 0.
    :raises ValueError: if k is outside [0, n] or the confidence outside (0, 1).
    """
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}, {trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if trials == 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + 0.5 * confidence))
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ratio_interval(numerators: ArrayLike, denominators: ArrayLike,
                             rng: np.random.Generator, resamples: int = 2000,
                             confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a pooled ratio sum(num) / sum(den) over units.

    :param numerators: per-trial numerators (e.g. objects removed).
    :param denominators: per-trial denominators (e.g. objects in the bin).
    :param rng: random generator (resampling).
    :param resamples: bootstrap resamples.
    :param confidence: confidence level.
    :return: ``(low, high)``; NaNs with fewer than 2 trials or a zero total denominator.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if len(num) < 2 or den.sum() == 0:
        return math.nan, math.nan
    idx = rng.integers(0, len(num), (resamples, len(num)))
    totals = den[idx].sum(axis=1)
    ratios = np.divide(num[idx].sum(axis=1), totals, out=np.full(resamples, np.nan),
                       where=totals > 0)
    ratios = ratios[np.isfinite(ratios)]
    alpha = 0.5 * (1.0 - confidence)
    return float(np.quantile(ratios, alpha)), float(np.quantile(ratios, 1.0 - alpha))


def t_interval(values: Sequence[float], confidence: float = 0.95,
               bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean and Student-t interval of per-trial values (NaN values ignored).

    :param values: per-trial values.
    :param confidence: confidence level.
    :param bounds: the values' range (a rate: ``(0, 1)``); the interval is clipped to it (with
        few trials the t interval reaches far outside it).
    :return: ``(mean, low, high)``; NaN mean without values, NaN bounds with fewer than 2.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if len(arr) == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + 0.5 * confidence, len(arr) - 1)) * float(
        arr.std(ddof=1)) / math.sqrt(len(arr))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high
