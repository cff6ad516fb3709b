"""Statistics over seeds against closed forms, tables, and simulation."""

import math

import numpy as np
import pandas as pd
import pytest

from optlab.analysis.stats import (
    MOST_SEEDS,
    Spread,
    compare,
    holm,
    incomplete_beta,
    linear_fit,
    one_sample,
    paired,
    seeds_needed,
    slope_test,
    student_t_sf,
    summarize,
    t_interval,
    t_quantile,
    unpaired,
    welch,
)


@pytest.mark.parametrize(
    "q,df,t",
    [  # Student's t table (e.g. Abramowitz & Stegun 26.10) and the normal's 97.5% point
        (0.975, 1, 12.706205),
        (0.975, 2, 4.302653),
        (0.975, 4, 2.776445),
        (0.975, 10, 2.228139),
        (0.975, 16, 2.119905),
        (0.975, 17, 2.109816),
        (0.975, 30, 2.042272),
        (0.995, 4, 4.604095),
        (0.95, 4, 2.131847),
        (0.975, math.inf, 1.959964),
        (0.025, 4, -2.776445),
    ],
)
def test_t_quantiles_match_the_table(q, df, t):
    assert t_quantile(q, df) == pytest.approx(t, abs=1e-6)


def test_t_quantile_inverts_the_tail():
    for df in (1, 3, 7.5, 100, 1e5):
        assert student_t_sf(t_quantile(0.99, df), df) == pytest.approx(0.01, rel=1e-8)
    with pytest.raises(ValueError, match="q = 1"):
        t_quantile(1, 4)


def test_t_interval_by_hand():
    # 1..5: x̄ = 3, s = √2.5, s/√5 = √0.5; t_{0.975,4} = 2.776445, half-width 1.963243
    lo, hi = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (lo, hi) == (
        pytest.approx(3 - 1.963243, abs=1e-6),
        pytest.approx(3 + 1.963243, abs=1e-6),
    )
    assert all(math.isnan(v) for v in t_interval([1.0]))


def _percentile_bootstrap(x: np.ndarray, rng: np.random.Generator, resamples: int = 1000):
    """The interval optlab used before: the central 95% of means of seeds drawn with replacement."""
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    return np.quantile(means, 0.025), np.quantile(means, 0.975)


def test_t_interval_covers_95_percent_at_five_seeds_where_the_bootstrap_does_not():
    # 4000 samples of five normal draws (true mean 0). The t interval covers 0 in 95% of them
    # (binomial sd 0.34%); the percentile bootstrap of the same samples only ~84%, because it
    # uses the n-denominator spread (√(4/5) too narrow) and normal quantiles where t_4's
    # are 42% wider.
    rng = np.random.default_rng(2024)
    samples = rng.normal(size=(4000, 5))
    t_hits = np.mean([lo <= 0 <= hi for lo, hi in map(t_interval, samples)])
    boot_hits = np.mean(
        [lo <= 0 <= hi for lo, hi in (_percentile_bootstrap(x, rng) for x in samples)]
    )
    print(f"coverage at n=5: Student t {t_hits:.4f}, percentile bootstrap {boot_hits:.4f}")
    assert 0.93 <= t_hits <= 0.97
    assert boot_hits < 0.93


def test_summary_mean_std_and_t_interval():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean, s.std) == (4, 2.5, pytest.approx(np.std([1, 2, 3, 4], ddof=1)))
    # t_{0.975,3} = 3.182446; s/√4 = 0.645497
    assert (s.lo, s.hi) == (
        pytest.approx(2.5 - 2.054260, abs=1e-5),
        pytest.approx(2.5 + 2.054260, abs=1e-5),
    )
    single = summarize([0.7])
    assert (single.mean, single.std) == (0.7, 0.0) and math.isnan(single.lo)


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
    e = unpaired(a, b)  # Welch's interval: −5 ± t_{0.975,ν}·√(va + vb)
    half = t_quantile(0.975, df_hand) * math.sqrt(va + vb)
    assert (e.method, e.n_a, e.n_b, e.mean) == ("Welch", 3, 4, -5.0)
    assert (e.lo, e.hi, e.p) == (
        pytest.approx(-5 - half),
        pytest.approx(-5 + half),
        pytest.approx(p),
    )


# Five seeds whose shared draw moves both cases by 0..40; a beats b by 1.0 ± 0.16 in each.
SHIFT = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
A = pd.Series(SHIFT + [1.0, 1.2, 0.8, 1.1, 0.9], index=[1, 2, 3, 4, 5])
B = pd.Series(SHIFT, index=[1, 2, 3, 4, 5])


def test_pairing_by_seed_decides_what_welch_cannot():
    e = paired(A, B)
    # differences 1.0, 1.2, 0.8, 1.1, 0.9: s = √0.025 = 0.158114, half-width 2.776445·s/√5
    assert (e.method, e.n, e.mean) == ("paired", 5, pytest.approx(1.0))
    assert (e.lo, e.hi) == (pytest.approx(0.803676, abs=1e-6), pytest.approx(1.196324, abs=1e-6))
    assert e.p == pytest.approx(2 * student_t_sf(1.0 / math.sqrt(0.025 / 5), 4)) and e.p < 2e-4
    w = unpaired(A, B)  # the same numbers as independent samples: the shift swamps the effect
    assert w.lo < 0 < w.hi and w.p > 0.9
    assert compare(A, B).method == "paired"


def test_compare_pairs_over_shared_seeds_and_falls_back_to_welch():
    assert compare(A, B[B.index < 5]).n == 4  # seeds 1–4 on both sides; a's seed 5 left out
    assert compare(A, B[B.index < 5]).mean == pytest.approx(A[:4].mean() - B[:4].mean())
    elsewhere = pd.Series(B.to_numpy(), index=[6, 7, 8, 9, 10])  # no seed in common
    assert (compare(A, elsewhere).method, compare(A, elsewhere).n_b) == ("Welch", 5)
    repeated = pd.Series(B.to_numpy(), index=[1, 1, 2, 2, 3])  # a grid: a seed twice
    assert compare(A, repeated).method == "Welch"
    two = compare(A[:2], B[:2])  # paired, but two seeds: an estimate, no interval, no test
    assert (two.method, two.n) == ("paired", 2) and math.isnan(two.lo) and math.isnan(two.p)


def test_one_sample_constant_and_too_few():
    assert one_sample([0.5, 0.5, 0.5]).p == 0.0 and one_sample([0.0, 0.0, 0.0]).p == 1.0
    e = one_sample([0.2, 0.4])
    assert e.mean == pytest.approx(0.3) and math.isnan(e.lo) and math.isnan(e.p)
    assert e.spread.sd == pytest.approx(math.sqrt(0.02))


def test_seeds_needed_by_hand():
    # sd 0.02, gap 0.01: t_{0.975,17}·0.02/√18 = 0.009946 < 0.01 ≤ t_{0.975,16}·0.02/√17 = 0.010283
    assert seeds_needed(0.01, Spread(0.02)) == 18
    # at the 1 − 0.05/6 level (Bonferroni over six tests) more: t_{0.99583,n−1}·0.02/√n < 0.01
    n = seeds_needed(0.01, Spread(0.02), 1 - 0.05 / 6)
    half = [t_quantile(1 - 0.05 / 12, k - 1) * 0.02 / math.sqrt(k) for k in (n - 1, n)]
    assert n > 18 and half[0] >= 0.01 > half[1]
    assert seeds_needed(0.01, Spread(0.0)) == 3  # no spread: the fewest seeds allowed
    assert seeds_needed(0.0, Spread(0.02)) is None  # on the threshold: never
    assert seeds_needed(0.01, Spread(math.nan)) is None  # one seed: spread unknown
    assert seeds_needed(1e-6, Spread(0.02)) is None  # ~1.5e9 seeds: beyond MOST_SEEDS
    assert seeds_needed(0.02 * 1.96 / math.sqrt(MOST_SEEDS / 2), Spread(0.02)) < MOST_SEEDS


def test_welch_spread_projects_n_seeds_a_side():
    # s_a = s_b = 1: sd √2, ν(n) = 2(n − 1); n = 10 gives t_{0.975,18}·√2/√10 = 0.9395
    e = unpaired([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert e.spread.sd == pytest.approx(math.sqrt(2)) and e.spread.df(10) == pytest.approx(18)
    assert seeds_needed(0.94, e.spread) == 10 and seeds_needed(0.939, e.spread) == 11


def test_holm_by_hand():
    # sorted p: 0.005·4=0.02, 0.01·3=0.03, 0.03·2=0.06, 0.04·1 → max(0.06, 0.04)=0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_linear_fit_and_slope_test():
    x = np.arange(10.0)
    assert linear_fit(x, 3 * x + 1) == pytest.approx((3.0, 1.0, 1.0))
    noise = np.random.default_rng(1).normal(size=10)
    slope, se, p = slope_test(x, 0.01 * x + noise)
    assert p > 0.05
    slope, se, p = slope_test(x, 2 * x + noise)
    assert slope == pytest.approx(2.0, abs=0.3) and p < 1e-6
    assert p == pytest.approx(2 * student_t_sf(slope / se, 8))
