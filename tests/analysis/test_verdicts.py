import math

import pandas as pd
import pytest

from optlab.analysis.stats import compare
from optlab.analysis.verdicts import FAILS, HOLDS, INCONCLUSIVE, greater, per_seed


def test_greater_tests_the_paired_mean_against_zero():
    a = pd.Series([1.1, 1.2, 1.3], index=[1, 2, 3])
    b = pd.Series([1.0, 1.0, 1.0], index=[1, 2, 3])
    (check,) = greater("a vs b", compare(a, b))
    # differences 0.1, 0.2, 0.3: t = 0.2 / (0.1 / √3) = √12 on 2 df, whose CDF is
    # 1/2 + t / (2 √(2 + t²)); p = 2 (1 − CDF)
    t = math.sqrt(12)
    assert check.p == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))), rel=1e-9)
    assert (check.effect_sign, check.leaning, check.method) == (1, HOLDS, "paired")
    assert check.value.startswith("a vs b, paired n=3,")
    check.p_adjusted = check.p
    assert check.decide() == INCONCLUSIVE  # p 0.074 is above α


def test_greater_from_two_seeds_is_undecided():
    a, b = pd.Series([0.5, 0.4], index=[1, 2]), pd.Series([0.6, 0.7], index=[1, 2])
    (check,) = greater("a vs b", compare(a, b))
    assert (check.verdict, check.p, check.effect_sign) == (INCONCLUSIVE, None, -1)
    assert check.value == "a vs b, paired: 2 seeds; at least 3 needed"


@pytest.mark.parametrize(
    ("passed", "verdict"),
    [([True] * 3, HOLDS), ([True, False, False], FAILS), ([True, True, False], INCONCLUSIVE)],
)
def test_per_seed_holds_only_when_every_seed_passes(passed, verdict):
    (check,) = per_seed(passed, "grows")
    assert check.decide() == verdict
    assert check.value == f"grows in {sum(passed)}/3 seeds"
