"""Statistics over seeds against closed forms."""

import math

import numpy as np
import pytest

from optlab.analysis.stats import (
    bootstrap_ci,
    holm,
    incomplete_beta,
    linear_fit,
    slope_test,
    student_t_sf,
    summarize,
    welch,
)


def test_bootstrap_interval_matches_the_normal_closed_form():
    # For n normal draws the bootstrap interval of the mean approaches x̄ ± 1.96·σ̂/√n.
    x = np.random.default_rng(3).normal(2.0, 1.5, size=400)
    lo, hi = bootstrap_ci(x)
    half = 1.959964 * x.std() / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = [
        lo <= 0.0 <= hi
        for lo, hi in (bootstrap_ci(rng.normal(size=50), resamples=2000) for _ in range(200))
    ]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_summary_mean_std_and_interval_order():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean, s.std) == (4, 2.5, pytest.approx(np.std([1, 2, 3, 4], ddof=1)))
    assert 1.0 <= s.lo < s.mean < s.hi <= 4.0


@pytest.mark.parametrize("t", [0.1, 1.0, 3.0, 20.0])
def test_student_t_tail_closed_forms(t):
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, rel=1e-10)
    assert student_t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), rel=1e-10)
    assert student_t_sf(t, math.inf) == pytest.approx(0.5 * math.erfc(t / math.sqrt(2)))


def test_t_quantiles_from_tables_and_beta_symmetry():
    assert 2 * student_t_sf(2.776445, 4) == pytest.approx(0.05, rel=1e-5)
    assert 2 * student_t_sf(2.228139, 10) == pytest.approx(0.05, rel=1e-5)
    assert incomplete_beta(0.3, 2.0, 5.0) + incomplete_beta(0.7, 5.0, 2.0) == pytest.approx(1.0)
    # I_x(1, b) = 1 − (1 − x)^b
    assert incomplete_beta(0.2, 1.0, 3.0) == pytest.approx(1 - 0.8**3)


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0, 10.0]
    va, vb = 1.0 / 3, np.var(b, ddof=1) / 4
    t_hand = (2.0 - 7.0) / math.sqrt(va + vb)
    df_hand = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    t, df, p = welch(a, b)
    assert (t, df) == (pytest.approx(t_hand), pytest.approx(df_hand))
    assert p == pytest.approx(2 * student_t_sf(abs(t_hand), df_hand))
    assert welch([1, 1], [1, 1])[2] == 1.0 and welch([1, 1], [2, 2])[2] == 0.0


def test_holm_by_hand():
    # sorted p: 0.005·4=0.02, 0.01·3=0.03, 0.03·2=0.06, 0.04·1 → max(0.06, 0.04)=0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_linear_fit_and_slope_test():
    x = np.arange(10.0)
    assert linear_fit(x, 3 * x + 1) == pytest.approx((3.0, 1.0, 1.0))
    noise = np.random.default_rng(1).normal(size=10)
    slope, p = slope_test(x, 0.01 * x + noise)
    assert p > 0.05
    slope, p = slope_test(x, 2 * x + noise)
    assert slope == pytest.approx(2.0, abs=0.3) and p < 1e-6
