"""The K-FAC claim rules (mechanisms 2 and 3), each on synthetic stores built to make it hold,
fail and be inconclusive, and the rise of a damping ratio on numbers worked by hand."""

import numpy as np
import pytest

from optlab.analysis.claims import FAILS, HOLDS, INCONCLUSIVE, judge
from optlab.analysis.kfac import rise_and_end
from tests.analysis.fake import fake_store

SEEDS = [1, 2, 3, 4, 5]
T = range(0, 1001, 25)
LAYERS = ("0.weight", "2.weight")
KFAC = {"optimizer.damping": 1.0}
CASES = {
    "fisher": {**KFAC, "optimizer.curvature": "fisher"},
    "fisher_wd": {**KFAC, "optimizer.curvature": "fisher", "optimizer.weight_decay": 0.03},
    "gn": {**KFAC, "optimizer.curvature": "gauss_newton"},
    "gn_wd": {**KFAC, "optimizer.curvature": "gauss_newton", "optimizer.weight_decay": 0.03},
}
# which seeds fail: none (holds), three of five (fails), one of five (4/5: inconclusive)
FAILING = {HOLDS: set(), FAILS: {1, 2, 3}, INCONCLUSIVE: {1}}


def _store(path, curves=lambda run: {}, finals=lambda run: {"test_accuracy": 0.9}, seeds=SEEDS):
    spec = {
        "name": "mechanisms",
        "base": {
            "task": {"name": "digits"},
            "model": {"name": "mlp", "kwargs": {"depth": 1, "width": 8}},
            "optimizer": {"name": "kfac", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0},
        },
        "cases": CASES,
        "seeds": seeds,
    }
    return fake_store(path, spec, finals, curves=curves)


def _judge(store, rule, part):
    claim = {"id": rule, "text": rule, "experiment": "mechanisms", "rule": rule}
    (verdict,), tests = judge(store, [{**claim, **part}])
    return verdict, tests


def _fisher(end=2.0):
    """The Fisher's damping ratio: 3 at step 0, down to 0.3 at step 75, then up to ``end``
    linearly, with a ±10% wobble every other evaluation."""

    def ratio(k):
        base = 3 - 2.7 * k / 75 if k <= 75 else 0.3 + (end - 0.3) * (k - 75) / 925
        return base * (1.1 if k // 25 % 2 else 0.9)

    return [(k, ratio(k)) for k in T]


def _gn(end=0.01):
    """Gauss-Newton's: 0.5 at step 0, down to 0.02 at step 25, then to ``end`` linearly (a
    bad seed's ``end`` above 0.02 makes it rise)."""
    return [(k, 0.5 if k == 0 else 0.02 + (end - 0.02) * (k - 25) / 975) for k in T]


def _ratios(series):
    return {"kfac": {f"{t}/damping_ratio": series for t in LAYERS}}


def _fit(bad):
    """ratio_whitened: 1.8 at initialization (left out), then 1 ± 2%; a bad seed's jumps to
    1.4 at step 500."""
    ratio = [
        (k, 1.8 if k == 0 else 1.4 if bad and k == 500 else 1 + 0.02 * (-1) ** (k // 25)) for k in T
    ]
    return {"jacobian": {"ratio_whitened": ratio}}


def _attenuated(run, bad):
    """fisher ends at 2; fisher_wd flat at 0.3, or (bad) with its last layer ending at 3."""
    if run.case == "fisher":
        return _ratios(_fisher())
    if run.case == "fisher_wd":
        flat = [(k, 0.3) for k in T]
        curves = _ratios(flat)
        if bad:
            curves["kfac"]["2.weight/damping_ratio"] = _fisher(end=3.0)
        return curves
    return {}


# Per rule: the claim's part, and the curves of a run of a seed that passes (bad=False) or fails
PER_SEED = {
    "stays_within": (
        {
            "case": "fisher",
            "split": "jacobian",
            "series": "ratio_whitened",
            "lo": 0.8,
            "hi": 1.25,
            "from_step": 25,
        },  # fmt: skip
        lambda run, bad: _fit(bad) if run.case == "fisher" else {},
    ),
    "damping_takes_over": (
        {"case": "fisher", "min_rise": 3.0, "min_end": 1.0},
        lambda run, bad: _ratios(_fisher(end=0.6 if bad else 2.0)) if run.case == "fisher" else {},
    ),
    "damping_attenuated": ({"a": "fisher_wd", "b": "fisher"}, _attenuated),
}


def _per_seed_store(path, rule, failing, seeds=SEEDS):
    curves = PER_SEED[rule][1]
    return _store(path, lambda run: curves(run, run.spec.train.seed in failing), seeds=seeds)


@pytest.mark.parametrize("expected", [HOLDS, FAILS, INCONCLUSIVE])
@pytest.mark.parametrize("rule", PER_SEED)
def test_each_per_seed_rule_holds_fails_or_is_inconclusive(tmp_path, rule, expected):
    part = PER_SEED[rule][0]
    store = _per_seed_store(tmp_path / "s.db", rule, FAILING[expected])
    verdict, tests = _judge(store, rule, part)
    assert tests == 0  # decided per seed: nothing to Holm-correct
    assert verdict.verdict == expected, verdict.value
    assert f"in {5 - len(FAILING[expected])}/5 seeds" in verdict.value
    assert verdict.seeds_needed == (None if expected == INCONCLUSIVE else 3)


@pytest.mark.parametrize("rule", PER_SEED)
def test_a_per_seed_rule_from_two_seeds_or_from_no_record_decides_nothing(tmp_path, rule):
    part = PER_SEED[rule][0]
    store = _per_seed_store(tmp_path / "s.db", rule, set(), seeds=[1, 2])
    verdict, _ = _judge(store, rule, part)
    assert verdict.verdict == INCONCLUSIVE and "2 seeds; at least 3 needed" in verdict.value
    verdict, _ = _judge(_store(tmp_path / "t.db"), rule, part)
    assert verdict.verdict == INCONCLUSIVE and "not recorded (split " in verdict.value


def test_stays_within_ignores_the_steps_before_from_step(tmp_path):
    # every seed's 1.8 at step 0 lies outside [0.8, 1.25]: judged from step 0, all fail
    part = {**PER_SEED["stays_within"][0], "from_step": 0}
    verdict, _ = _judge(
        _per_seed_store(tmp_path / "s.db", "stays_within", set()), "stays_within", part
    )
    assert verdict.verdict == FAILS and "0.980–1.800" in verdict.value


def test_damping_takes_over_with_upper_bounds_is_gauss_newtons_claim(tmp_path):
    """Gauss-Newton's ratio falls from 0.02 to 0.01 (rise 1.0, end 0.01): at most 1.5 and 0.1
    hold; a seed whose ratio climbs to 0.2 (rise ≈ 6, end ≈ 0.18) fails them."""
    part = {"case": "gn", "max_rise": 1.5, "max_end": 0.1}
    for expected, failing in FAILING.items():
        store = _store(
            tmp_path / f"{expected}.db",
            lambda run, f=failing: (
                _ratios(_gn(0.2 if run.spec.train.seed in f else 0.01)) if run.case == "gn" else {}
            ),
        )
        verdict, _ = _judge(store, "damping_takes_over", part)
        assert verdict.verdict == expected, verdict.value


def test_rise_and_end_on_numbers_worked_by_hand():
    # the last fifth of steps 0..100 is 80, 90, 100: mean (1 + 2 + 3)/3 = 2; lowest 0.5: rise 4
    steps = np.arange(0, 101, 10.0)
    values = np.array([3, 2, 0.5, 1, 1, 1, 1, 1, 1, 2, 3])
    assert rise_and_end(steps, values) == pytest.approx((4.0, 2.0))


def _accuracies(shift):
    """Test accuracy per case: decay gains 0.005 under the Fisher and −0.002 under Gauss-Newton
    (a difference of +0.007), plus ``shift(seed)`` on fisher_wd."""
    base = {"fisher": 0.96, "fisher_wd": 0.965, "gn": 0.97, "gn_wd": 0.968}
    return lambda run: {"test_accuracy": base[run.case] + (run.case == "fisher_wd") * shift(run)}


@pytest.mark.parametrize(
    ("expected", "shift"),
    [
        (HOLDS, lambda run: 0.001 * (run.spec.train.seed % 3)),  # +0.007 to +0.009
        (FAILS, lambda run: -0.015 + 0.001 * (run.spec.train.seed % 3)),  # −0.008 to −0.006
        (INCONCLUSIVE, lambda run: 0.02 * (-1) ** run.spec.train.seed - 0.007),  # ±0.02 noise
    ],
)
def test_helps_more_is_a_paired_test_of_the_difference_of_gains(tmp_path, expected, shift):
    part = {"metric": "test_accuracy", "a": "fisher_wd", "a_base": "fisher", "b": "gn_wd",
            "b_base": "gn"}  # fmt: skip
    verdict, tests = _judge(
        _store(tmp_path / "s.db", finals=_accuracies(shift)), "helps_more", part
    )
    assert tests == 1 and verdict.verdict == expected, verdict.value
    assert "paired n=5" in verdict.value


def test_helps_more_without_a_case_or_with_two_seeds_decides_nothing(tmp_path):
    part = {"metric": "test_accuracy", "a": "fisher_wd", "a_base": "fisher", "b": "gn_wd",
            "b_base": "absent"}  # fmt: skip
    verdict, _ = _judge(_store(tmp_path / "s.db"), "helps_more", part)
    assert verdict.verdict == INCONCLUSIVE and "no runs in the store" in verdict.value
    store = _store(tmp_path / "t.db", finals=_accuracies(lambda run: 0.0), seeds=[1, 2])
    verdict, _ = _judge(store, "helps_more", {**part, "b_base": "gn"})
    assert verdict.verdict == INCONCLUSIVE and "2 seeds; at least 3 needed" in verdict.value
