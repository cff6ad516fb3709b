"""Statistics over seeds: summaries with bootstrap intervals, Welch's test, Holm's correction.

With a handful of seeds per cell, every figure is quoted with its interval and every
comparison with its test; the number of comparisons is stated and corrected for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for a single seed
    lo: float  # 95% percentile-bootstrap interval of the mean
    hi: float


def bootstrap_ci(
    values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the seeds with replacement."""
    rng = np.random.default_rng(seed)
    return _percentiles(_resampled_means(values, rng, resamples), level)


def _resampled_means(values: Sequence[float], rng: np.random.Generator, resamples: int):
    """Means of ``resamples`` draws of the values with replacement, as many as there are."""
    x = np.asarray(values, dtype=float)
    return x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap samples."""
    tail = (1 - level) / 2
    return float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))


def summarize(values: Sequence[float]) -> Summary:
    x = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(x)
    return Summary(len(x), float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0, lo, hi)


def difference_ci(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of mean(a) − mean(b), each group resampled on its own."""
    rng = np.random.default_rng(seed)
    da = _resampled_means(a, rng, RESAMPLES)
    return _percentiles(da - _resampled_means(b, rng, RESAMPLES), level)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t test of mean(a) = mean(b): (t, degrees of freedom, p two-sided).

    t = (ā − b̄)/√(s_a²/n_a + s_b²/n_b), ν by Welch–Satterthwaite. Equal constant samples
    give p = 1; different constant samples p = 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    if va + vb == 0:
        return (0.0, math.inf, 1.0) if diff == 0 else (math.copysign(math.inf, diff), math.inf, 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(t), float(df), 2 * student_t_sf(abs(t), df)


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom, t ≥ 0: ½·I_{ν/(ν+t²)}(ν/2, ½)."""
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2))
    return 0.5 * incomplete_beta(df / (df + t * t), df / 2, 0.5)


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by Lentz's continued fraction."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below the mean
        return 1 - incomplete_beta(1 - x, b, a)
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1 - c * d) < 1e-14:
            break
    return front * (f - 1) / a


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values: family-wise error controlled over all m tests."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y ≈ slope·x + intercept: (slope, intercept, R²)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1 - (residual**2).sum() / total if total > 0 else 1.0
    return float(slope), float(intercept), float(r2)


def slope_test(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """The least-squares slope of y on x and its two-sided p-value (t with n − 2 df)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept, _ = linear_fit(x, y)
    n = len(x)
    residual = y - (slope * x + intercept)
    se = math.sqrt((residual**2).sum() / (n - 2) / ((x - x.mean()) ** 2).sum())
    if se == 0:
        return slope, 0.0 if slope != 0 else 1.0
    return slope, 2 * student_t_sf(abs(slope / se), n - 2)
