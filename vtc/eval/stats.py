"""Plain statistics for comparing methods: a Student-t interval of a mean over seeds, a paired bootstrap of the
difference between two methods over the same test videos, and the retention of a compressed model's accuracy.

Bootstrap intervals are percentile intervals (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993,
Sec. 13.3) over test videos, the unit that was sampled; seeds are pooled by averaging each video's value over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vtc.utils.checks import check_float, check_int

RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class MeanInterval:
    """A mean and the half-width of its confidence interval; `half_width` is None when it is undefined (one value),
    never 0 for lack of data."""

    mean: float
    half_width: float | None
    count: int


@dataclass(frozen=True)
class BootstrapInterval:
    """A point estimate and its bootstrap confidence interval `[low, high]`."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether 0 lies outside the interval: the difference it bounds is significant at its confidence."""
        return self.low > 0 or self.high < 0


def check_confidence(confidence: float) -> float:
    """`confidence` as a float if it lies strictly between 0 and 1, else `ValueError` naming it."""
    value = check_float("confidence", confidence, 0.0, 1.0, include_low=False)
    if value == 1.0:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence}")
    return value


def t_two_sided_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's T with `df` degrees of freedom, exactly (Abramowitz & Stegun 26.7.3 and 26.7.4:
    a finite series in cos(theta), theta = arctan(t / sqrt(df)))."""
    theta = math.atan(t / math.sqrt(df))
    cos, sin = math.cos(theta), math.sin(theta)
    if df % 2 == 1:  # odd df: (2/pi) (theta + sin (cos + 2/3 cos^3 + ... + [2*4..(df-3)]/[1*3..(df-2)] cos^(df-2)))
        term, total = cos, 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos * cos * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + sin * total)
    # even df: sin (1 + 1/2 cos^2 + 3/8 cos^4 + ... + [1*3..(df-3)]/[2*4..(df-2)] cos^(df-2))
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= cos * cos * (2 * k - 1) / (2 * k)
    return sin * total


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = `confidence` for Student's T with `df` degrees of freedom (the two-sided critical
    value: 4.303 for 95% and df = 2), by bisection of the exact distribution (`t_two_sided_probability`)."""
    confidence = check_confidence(confidence)
    df = check_int("df", df)
    high = 1.0
    while t_two_sided_probability(high, df) < confidence:
        high *= 2
    low = 0.0
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if t_two_sided_probability(middle, df) < confidence else (low, middle)
    return high


def finite_array(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """`values` as a non-empty float array, else `ValueError` naming `name` and what came."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError(f"{name} must hold at least one value, got none")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> MeanInterval:
    """Mean of `values` (one per seed) and the half-width of its Student-t confidence interval,
    `t_{n-1} * s / sqrt(n)` with `s` the sample standard deviation (Student, 1908); None for one value.

    Raises:
        ValueError: no value, a non-finite one, or a confidence outside (0, 1).
    """
    array = finite_array("values", values).reshape(-1)
    confidence = check_confidence(confidence)
    mean = float(array.mean())
    if array.size == 1:
        return MeanInterval(mean, None, 1)
    spread = float(array.std(ddof=1)) / math.sqrt(array.size)
    return MeanInterval(mean, t_quantile(confidence, array.size - 1) * spread, int(array.size))


def paired_videos(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two paired `[V]` or `[S, V]` arrays (seeds x videos) as `[S, V]` each, else `ValueError` naming both shapes."""
    first, second = finite_array(name_a, a), finite_array(name_b, b)
    if first.shape != second.shape or first.ndim not in (1, 2):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, [videos] or [seeds, videos], got {first.shape} and "
            f"{second.shape}"
        )
    return first.reshape(-1, first.shape[-1]), second.reshape(-1, second.shape[-1])


def video_resamples(num_videos: int, resamples: int, seed: int) -> np.ndarray:
    """`[resamples, num_videos]` video indices drawn with replacement by a generator seeded with `seed`."""
    resamples = check_int("resamples", resamples)
    return np.random.default_rng(seed).integers(0, num_videos, size=(resamples, num_videos))


def percentile_interval(estimate: float, replicates: np.ndarray, confidence: float) -> BootstrapInterval:
    """The percentile interval of bootstrap `replicates` (order statistics, so infinite replicates stay exact)."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail], method="inverted_cdf")
    return BootstrapInterval(float(estimate), float(low), float(high))


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> BootstrapInterval:
    """Mean difference `a - b` of two methods scored on the same videos (and seeds), with its paired bootstrap
    interval: each video's difference averaged over seeds, the videos resampled with replacement `resamples` times.

    Args:
        a, b: per-video scores, `[V]` or `[S, V]` (seed s, video v), the same shape and order.
        confidence: the interval's coverage, in (0, 1).
        resamples: bootstrap replicates.
        seed: the resampling generator's seed (fixed, so a report is reproducible).

    Returns:
        The mean of `a - b` and its interval; `.excludes_zero` says whether the difference is significant.

    Raises:
        ValueError: shapes differ or are not 1-D/2-D, a value is not finite, or a setting is out of range.
    """
    first, second = paired_videos("a", a, "b", b)
    confidence = check_confidence(confidence)
    difference = (first - second).mean(axis=0)  # [V]
    replicates = difference[video_resamples(difference.size, resamples, seed)].mean(axis=1)
    return percentile_interval(difference.mean(), replicates, confidence)


def retention(
    compressed: Sequence[float] | np.ndarray,
    uncompressed: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> BootstrapInterval:
    """Retention `mean(compressed) / mean(uncompressed)` of paired non-negative per-video scores (`[V]` or
    `[S, V]`), with its paired bootstrap interval over videos (a replicate whose uncompressed mean is 0 counts as
    an infinite ratio).

    Raises:
        ValueError: shapes differ, a value is negative or not finite, the uncompressed mean is 0 (the ratio is
            undefined), or a setting is out of range.
    """
    numerator, denominator = paired_videos("compressed", compressed, "uncompressed", uncompressed)
    confidence = check_confidence(confidence)
    if (numerator < 0).any() or (denominator < 0).any():
        raise ValueError("retention needs non-negative scores (IoUs), got a negative value")
    if denominator.mean() == 0:
        raise ValueError("retention is undefined: the uncompressed scores are all 0")
    per_video = np.stack([numerator.mean(axis=0), denominator.mean(axis=0)])  # [2, V]
    sums = per_video[:, video_resamples(per_video.shape[1], resamples, seed)].sum(axis=2)  # [2, resamples]
    replicates, positive = np.full(sums.shape[1], np.inf), sums[1] > 0
    replicates[positive] = sums[0, positive] / sums[1, positive]
    return percentile_interval(numerator.mean() / denominator.mean(), replicates, confidence)
