"""Statistics over seeds: Student-t intervals, paired and Welch comparisons, Holm's correction,
and how many seeds would make a decision.

Runs of different cases with the same training seed share their data stream (and, where
shapes match, their initial draws), so two cases are compared per seed where they can be
(``compare``); Welch's unequal-variance test is the fallback where their seeds differ. With
a handful of seeds the intervals are Student-t: a percentile bootstrap of five seeds covers
the mean about 84% of the time, not 95% (tests/analysis/test_stats.py measures both).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
MIN_SEEDS = 3  # no interval and no verdict from fewer seeds (optlab.analysis.claims)
MOST_SEEDS = 1_000_000  # seeds_needed gives up beyond this


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for a single seed
    lo: float  # 95% Student-t interval of the mean; NaN for a single seed
    hi: float


@dataclass(frozen=True)
class Spread:
    """How an estimate's uncertainty shrinks with the seeds n: standard error ``sd``/√n, with
    ``df(n)`` degrees of freedom (n − 1 for a mean over seeds)."""

    sd: float
    df: Callable[[int], float] = lambda n: n - 1


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds (of one sample, of per-seed differences, or a Welch difference of
    means) with its t interval and the two-sided p of a zero mean; interval and p are NaN
    from fewer than ``MIN_SEEDS`` seeds. ``method``: "paired" (one-sample t over the seeds
    both sides have, n − 1 df), "Welch" (independent sides, Welch–Satterthwaite df) or
    "pooled" (``pooled_slope``); ``n_a``, ``n_b``: the seeds behind each side."""

    method: str
    n_a: int
    n_b: int
    mean: float
    lo: float
    hi: float
    p: float
    spread: Spread

    @property
    def n(self) -> int:
        return min(self.n_a, self.n_b)


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom (df = ∞: the normal), by
    bisection on ``student_t_sf``; t_{0.975, 4} = 2.776445."""
    if not 0 < q < 1:
        raise ValueError(f"t_quantile: q = {q} is not in (0, 1)")
    return math.copysign(_t_upper(min(q, 1 - q), float(df)), q - 0.5)


@functools.lru_cache(maxsize=4096)
def _t_upper(tail: float, df: float) -> float:
    """The t ≥ 0 with P(T > t) = tail."""
    lo, hi = 0.0, 1.0
    while student_t_sf(hi, df) > tail:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-12 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if student_t_sf(mid, df) > tail else (lo, mid)
    return (lo + hi) / 2


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean: x̄ ± t_{(1+level)/2, n−1}·s/√n (NaN below two values)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    half = t_quantile((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def summarize(values: Sequence[float]) -> Summary:
    x = np.asarray(values, dtype=float)
    lo, hi = t_interval(x)
    return Summary(len(x), float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0, lo, hi)


def one_sample(values: Sequence[float], method: str = "paired") -> Estimate:
    """The mean of per-seed values (differences, slopes) with its t interval and one-sample
    t test of a zero mean: t = x̄/(s/√n), n − 1 df. A constant sample gives p = 1 at zero,
    else p = 0."""
    x = np.asarray(values, dtype=float)
    n, mean = len(x), float(x.mean()) if len(x) else math.nan
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    lo = hi = p = math.nan
    if n >= MIN_SEEDS:
        lo, hi = t_interval(x)
        p = _two_sided(mean, sd / math.sqrt(n), n - 1)
    return Estimate(method, n, n, mean, lo, hi, p, Spread(sd))


def paired(a: pd.Series, b: pd.Series) -> Estimate:
    """mean(a − b) over the seeds (the index) both have: the per-seed differences' t."""
    shared = a.index.intersection(b.index)
    return one_sample(a[shared].to_numpy(float) - b[shared].to_numpy(float), "paired")


def unpaired(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) − mean(b) of independent samples: Welch's interval ± t_ν·√(s_a²/n_a + s_b²/n_b)
    and test. Its spread, for ``seeds_needed``, supposes n seeds on each side:
    sd = √(s_a² + s_b²), ν(n) = (n − 1)·(s_a² + s_b²)²/(s_a⁴ + s_b⁴)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    mean = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    va = a.var(ddof=1) if len(a) > 1 else math.nan
    vb = b.var(ddof=1) if len(b) > 1 else math.nan
    ratio = (va + vb) ** 2 / (va**2 + vb**2) if va + vb > 0 else 1.0
    spread = Spread(math.sqrt(va + vb), lambda n: (n - 1) * ratio)
    lo = hi = p = math.nan
    if min(len(a), len(b)) >= MIN_SEEDS:
        _, df, p = welch(a, b)
        se = math.sqrt(va / len(a) + vb / len(b))
        half = t_quantile((1 + LEVEL) / 2, df) * se if se > 0 else 0.0
        lo, hi = mean - half, mean + half
    return Estimate("Welch", len(a), len(b), mean, lo, hi, p, spread)


def shared_seeds(*sides: pd.Series) -> pd.Index | None:
    """The seeds (the index) every side has, where pairing by seed holds: no seed repeated
    within a side, and at least ``MIN_SEEDS`` shared or the same seeds everywhere; else None."""
    if not all(side.index.is_unique for side in sides):
        return None
    shared = sides[0].index
    for side in sides[1:]:
        shared = shared.intersection(side.index)
    same = all(len(side) == len(shared) for side in sides)
    return shared if len(shared) >= MIN_SEEDS or same else None


def compare(a: pd.Series, b: pd.Series) -> Estimate:
    """mean(a) − mean(b) of two cases' values indexed by training seed: paired over the seeds
    both have (``shared_seeds``), Welch's where pairing does not hold."""
    if shared_seeds(a, b) is not None:
        return paired(a, b)
    return unpaired(a.to_numpy(float), b.to_numpy(float))


def pooled_slope(xs: Sequence[float], ys: Sequence[Sequence[float]]) -> Estimate:
    """The least-squares slope over the N ≥ 3 runs of cases at ``xs`` with values ``ys``, for
    cases whose seeds differ: its t interval and test with N − 2 df (none when a case has
    fewer than ``MIN_SEEDS``). With n seeds a case its standard error would be se·√(N/k)/√n
    over the k cases, with k·n − 2 df."""
    x = [xi for xi, y in zip(xs, ys, strict=True) for _ in range(len(y))]
    y = [v for y in ys for v in y]
    n, k = min(len(y) for y in ys), len(ys)
    slope, se, p = slope_test(x, y)
    half = t_quantile((1 + LEVEL) / 2, len(y) - 2) * se
    if n < MIN_SEEDS:
        half = p = math.nan
    spread = Spread(se * math.sqrt(len(y) / k), lambda m: k * m - 2)
    return Estimate("pooled", n, n, slope, slope - half, slope + half, p, spread)


def seeds_needed(distance: float, spread: Spread, level: float = LEVEL) -> int | None:
    """The fewest seeds n ≥ ``MIN_SEEDS`` at which the ``level`` t interval's half-width,
    t_{(1+level)/2, df(n)}·sd/√n, is below ``distance``, the gap between the observed
    estimate and the rule's decision threshold: the size at which a rerun that saw the same
    mean and spread would decide. It is the n of about 50% power, not 80%: a true effect
    equal to the observed one would be decided about half the time at that n.
    None when the estimate sits on the threshold, the spread is unknown (one seed), or more
    than ``MOST_SEEDS`` would be needed."""
    if not distance > 0 or not spread.sd >= 0:
        return None
    if spread.sd == 0:
        return MIN_SEEDS

    def clears(n: int) -> bool:
        return t_quantile((1 + level) / 2, spread.df(n)) * spread.sd / math.sqrt(n) < distance

    if not clears(MOST_SEEDS):
        return None
    lo, hi = MIN_SEEDS - 1, MIN_SEEDS  # lo: the most seeds known not to clear (or none)
    while not clears(hi):
        lo, hi = hi, min(2 * hi, MOST_SEEDS)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if clears(mid) else (mid, hi)
    return hi


def _two_sided(mean: float, se: float, df: float) -> float:
    """Two-sided p of t = mean/se with ``df`` degrees of freedom; se = 0: p = 1 at a zero mean,
    else 0."""
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return 2 * student_t_sf(abs(mean / se), df)


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


def slope_test(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """The least-squares slope of y on x, its standard error and its two-sided p-value (t with
    n − 2 df): (slope, se, p)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept, _ = linear_fit(x, y)
    n = len(x)
    residual = y - (slope * x + intercept)
    se = math.sqrt((residual**2).sum() / (n - 2) / ((x - x.mean()) ** 2).sum())
    return slope, se, _two_sided(slope, se, n - 2)
