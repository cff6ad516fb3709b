"""The scale-invariance claim rules, each on synthetic stores built to make it hold, fail and be
inconclusive; the square-root law's fit and the equilibrium angle on numbers worked by hand."""

import math

import numpy as np
import pytest

from optlab.analysis.claims import FAILS, HOLDS, INCONCLUSIVE, judge
from optlab.analysis.invariance import equilibrium_angle, sqrt_law
from tests.analysis.fake import fake_store

SEEDS = [1, 2, 3, 4, 5]
T = range(0, 2001, 20)
TENSORS = ("0.weight", "3.weight")  # the hidden Linears that feed BatchNorm
SGDM = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
ADAMW = {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.1}
CASES = {
    "sgdm": {},
    "adamw": {f"optimizer.{k}": v for k, v in ADAMW.items()}
    | {"optimizer.decay_groups": {"3.*": 0.05}},
    "b": {"optimizer.weight_decay": 0.0},
}
# which seeds fail: none (holds), three of five (fails), one of five (4/5: inconclusive)
FAILING = {HOLDS: set(), FAILS: {1, 2, 3}, INCONCLUSIVE: {1}}


def _series(f, steps=T):
    return [(t, float(f(t))) for t in steps]


def _store(path, curves=lambda run: {}, finals=lambda run: {"test_accuracy": 0.9}, seeds=SEEDS):
    spec = {
        "name": "invariance",
        "base": {
            "task": {"name": "digits"},
            "model": {
                "name": "mlp",
                "kwargs": {"depth": 2, "width": 8, "normalization": "batchnorm"},
            },
            "optimizer": {"name": "sgd", **SGDM},
        },
        "cases": CASES,
        "seeds": seeds,
    }
    return fake_store(path, spec, finals, curves=curves)


def _judge(store, rule, part, case="sgdm"):
    claim = {"id": rule, "text": rule, "experiment": "invariance", "case": case, "rule": rule}
    (verdict,), tests = judge(store, [{**claim, **part}])
    assert tests == 0  # per-seed and interval rules: nothing to Holm-correct
    return verdict


def _cosine(bad):
    """|cos(w, g)| at 1e-6 throughout, or one step at −2e-3 in 3.weight."""
    return {
        "invariance": {
            f"{t}/grad_cosine": _series(
                lambda k, t=t: -2e-3 if bad and t == "3.weight" and k == 1000 else 1e-6 * (-1) ** k
            )
            for t in TENSORS
        }
    }


def _sqrt_norms(bad):
    """‖w_k‖² = 2√(1 + k/k₀) with k₀ = 50 and 200, or shrinking as 1 + e^{−k/200} (no such law
    fits); a last Linear (5.weight) that is not scale-invariant shrinks in every seed."""
    laws = {"0.weight": 50, "3.weight": 200}
    l2 = {
        f"{t}/l2": _series(
            lambda k, k0=k0: math.sqrt(1 + math.exp(-k / 200) if bad else 2 * math.sqrt(1 + k / k0))
        )
        for t, k0 in laws.items()
    }
    l2["5.weight/l2"] = _series(lambda k: 1 + math.exp(-k / 200))
    residual = {f"{t}/norm_law_residual": _series(lambda k: 0.0) for t in laws}
    return {"params": l2, "invariance": residual}


def _predicted(case, tensor):
    if case == "sgdm":
        return equilibrium_angle("sgdm", SGDM["lr"], SGDM["weight_decay"], SGDM["momentum"])
    lam = 0.05 if tensor == "3.weight" else ADAMW["weight_decay"]  # the 3.* group's λ
    return equilibrium_angle("adamw", ADAMW["lr"], lam, ADAMW["betas"][0])


def _equilibrium(case, angle_off=False, norm_off=False):
    """The angular update relaxing to its predicted equilibrium (×1.5 where ``angle_off``) and
    ‖w‖ to 1 (still growing where ``norm_off``)."""
    scale = 1.5 if angle_off else 1.0
    norm = (lambda k: 1 + k / 1000) if norm_off else (lambda k: 1 + math.exp(-k / 200))
    relax = lambda k: scale * (1 + 0.5 * math.exp(-k / 200))  # noqa: E731
    angle = {
        f"{t}/angular_update": [(k, _predicted(case, t) * v) for k, v in _series(relax)]
        for t in TENSORS
    }
    return {"invariance": angle, "params": {f"{t}/l2": _series(norm) for t in TENSORS}}


def _eval(accuracy_shift=0.0, loss_factor=1.0):
    return {
        "eval": {
            "accuracy": _series(lambda k: 0.9 - 0.5 * math.exp(-k / 300) + accuracy_shift),
            "loss": _series(lambda k: (0.2 + 2 * math.exp(-k / 300)) * loss_factor),
        }
    }


def _tracking(bad):
    """a's eval curves: 0.005 and 1% off b's, or 0.05 off in accuracy."""
    return _eval(0.05 if bad else 0.005, 1.01)


# Per rule: the claim's part, the case that records, and its curves for a seed that passes
# (bad=False) or fails (bad=True); ``tracks`` compares a = "sgdm" with b's ``_eval()``.
PER_SEED = {
    "stays_below": ({"quantity": "grad_cosine", "max": 1e-4}, "sgdm", _cosine),
    "sqrt_growth": ({"min_r2": 0.99}, "b", _sqrt_norms),
    "angular_equilibrium": (
        {"formula": "sgdm", "tolerance": 0.2},
        "sgdm",
        lambda bad: _equilibrium("sgdm", angle_off=bad),
    ),
    "tracks": (
        {"a": "sgdm", "b": "b", "accuracy_tolerance": 0.01, "loss_tolerance": 0.05},
        "sgdm",
        _tracking,
    ),
}


def _per_seed_store(path, rule, failing, seeds=SEEDS):
    _, case, curves = PER_SEED[rule]

    def recorded(run):
        if rule == "tracks" and run.case == "b":
            return _eval()
        return curves(run.spec.train.seed in failing) if run.case == case else {}

    return _store(path, recorded, seeds=seeds)


@pytest.mark.parametrize("expected", [HOLDS, FAILS, INCONCLUSIVE])
@pytest.mark.parametrize("rule", PER_SEED)
def test_each_per_seed_rule_holds_fails_or_is_inconclusive(tmp_path, rule, expected):
    part, case, _ = PER_SEED[rule]
    verdict = _judge(_per_seed_store(tmp_path / "s.db", rule, FAILING[expected]), rule, part, case)
    assert verdict.verdict == expected, verdict.value
    assert f"in {5 - len(FAILING[expected])}/5 seeds" in verdict.value
    assert verdict.seeds_needed == (None if expected == INCONCLUSIVE else 3)


@pytest.mark.parametrize("rule", PER_SEED)
def test_a_per_seed_rule_from_two_seeds_or_from_no_record_decides_nothing(tmp_path, rule):
    part, case, _ = PER_SEED[rule]
    verdict = _judge(
        _per_seed_store(tmp_path / "s.db", rule, set(), seeds=[1, 2]), rule, part, case
    )
    assert verdict.verdict == INCONCLUSIVE and "2 seeds; at least 3 needed" in verdict.value
    unrecorded = {**part, "a": "adamw"} if rule == "tracks" else part  # adamw records nothing
    verdict = _judge(_store(tmp_path / "t.db"), rule, unrecorded, "adamw")
    assert verdict.verdict == INCONCLUSIVE and "not recorded (split " in verdict.value


def test_stays_below_reports_the_largest_magnitude_per_seed(tmp_path):
    part, case, _ = PER_SEED["stays_below"]
    verdict = _judge(_per_seed_store(tmp_path / "s.db", "stays_below", {2}), "stays_below", part)
    assert "(largest 1e-06/0.002/1e-06/1e-06/1e-06)" in verdict.value  # |−2e-3| in seed 2


def test_sqrt_law_recovers_k0_and_a_from_an_exact_series():
    k = np.arange(0, 1001, 10.0)
    a, k0, r2 = sqrt_law(k, 2 * np.sqrt(1 + k / 50))
    assert k0 == pytest.approx(50, rel=1e-6) and a == pytest.approx(2, rel=1e-6) and r2 > 0.999
    noisy = 2 * np.sqrt(1 + k / 50) * (1 + 0.01 * np.random.default_rng(0).standard_normal(len(k)))
    assert sqrt_law(k, noisy)[1] == pytest.approx(50, rel=0.1)  # 1% noise: within 10%
    assert sqrt_law(k, 1 + np.exp(-k / 200))[2] < 0.5  # a shrinking norm fits no such law


def test_sqrt_growth_reports_k0_over_the_scale_invariant_tensors_only(tmp_path):
    part, case, _ = PER_SEED["sqrt_growth"]
    verdict = _judge(
        _per_seed_store(tmp_path / "s.db", "sqrt_growth", set()), "sqrt_growth", part, case
    )
    # 0.weight's k₀ = 50 and 3.weight's 200 in each of five seeds; 5.weight (not invariant) left out
    assert "k₀ median 125 [50, 200]" in verdict.value and "over 10 tensors × seeds" in verdict.value
    assert "R² 1.0000–1.0000" in verdict.value
    verdict = _judge(_per_seed_store(tmp_path / "t.db", "sqrt_growth", set()), "sqrt_growth",
                     {**part, "tensors": ["5.weight"]}, case)  # fmt: skip
    assert verdict.verdict == FAILS


def test_the_equilibrium_angle_on_numbers_worked_by_hand():
    # √(2·0.1·5e-4/1.9) = √(5.2632e-5); √(2·1e-3·0.1·0.1/1.9) = √(1.0526e-5)
    assert equilibrium_angle("sgdm", 0.1, 5e-4, 0.9) == pytest.approx(7.2548e-3, rel=1e-4)
    assert equilibrium_angle("adamw", 1e-3, 0.1, 0.9) == pytest.approx(3.2444e-3, rel=1e-4)
    with pytest.raises(ValueError, match="'adam' is not one of sgdm, adamw"):
        equilibrium_angle("adam", 1e-3, 0.1, 0.9)


@pytest.mark.parametrize(
    "angle_off,norm_off,expected",
    [(False, False, HOLDS), (True, False, FAILS), (False, True, FAILS)],
)
def test_angular_equilibrium_under_adamw_reads_lambda_per_decay_group(
    tmp_path, angle_off, norm_off, expected
):
    """3.weight decays at its group's λ = 0.05, not the run's 0.1: its angle is √2 smaller."""

    def curves(run):
        return _equilibrium("adamw", angle_off, norm_off) if run.case == "adamw" else {}

    part = {"formula": "adamw", "tolerance": 0.2}
    verdict = _judge(_store(tmp_path / "s.db", curves), "angular_equilibrium", part, "adamw")
    assert verdict.verdict == expected, verdict.value
    angle, norm = verdict.checks
    assert angle.decide() == (FAILS if angle_off else HOLDS)
    assert norm.decide() == (FAILS if norm_off else HOLDS)
    ratio = "1.500" if angle_off else "1.000"
    assert f"= 0.00229–0.00324 rad for every tensor (measured/predicted {ratio})" in angle.value


GAP = [0.05, 0.04, 0.06, 0.05, 0.05]  # test accuracy with decay minus without, per seed


def _gap_store(path, shares, gap=GAP, seeds=SEEDS):
    """Without decay (b) at 0.9 + 0.01·seed; with decay (sgdm) ``gap`` above; the graft
    (adamw, standing in) ``shares`` of the way from b to sgdm."""

    def finals(run):
        i = seeds.index(run.spec.train.seed)
        b = 0.9 + 0.01 * run.spec.train.seed
        value = {"b": b, "sgdm": b + gap[i], "adamw": b + shares[i] * gap[i]}[run.case]
        return {"test_accuracy": value}

    return _store(path, finals=finals, seeds=seeds)


GAP_CLOSED = {"metric": "test_accuracy", "graft": "adamw", "a": "sgdm", "b": "b", "min_share": 0.7}


@pytest.mark.parametrize(
    "shares,gap,expected,closed",
    [
        ([0.88, 0.92, 0.9, 0.89, 0.91], GAP, HOLDS, "closes 90% of it"),
        ([0.3, 0.35, 0.25, 0.3, 0.3], GAP, FAILS, "closes 30% of it"),
        ([0.4, 1.0, 0.6, 0.9, 0.65], GAP, INCONCLUSIVE, "closes 69% of it"),  # straddles 70%
        ([0.9] * 5, [0.01, -0.01, 0.005, -0.005, 0.002], INCONCLUSIVE, "no gap to close"),
    ],
)
def test_gap_closed_judges_the_share_of_the_gap_on_its_paired_interval(
    tmp_path, shares, gap, expected, closed
):
    verdict = _judge(_gap_store(tmp_path / "s.db", shares, gap), "gap_closed", GAP_CLOSED)
    assert verdict.verdict == expected, verdict.value
    assert closed in verdict.value and "paired n=5" in verdict.value
    if gap is GAP:
        assert verdict.value.startswith("test_accuracy gap sgdm − b = +0.0500 [+0.0412, +0.0588]")


def test_gap_closed_from_two_seeds_or_no_runs_decides_nothing(tmp_path):
    store = _gap_store(tmp_path / "s.db", [0.9, 0.9], GAP[:2], seeds=[1, 2])
    verdict = _judge(store, "gap_closed", GAP_CLOSED)
    assert verdict.verdict == INCONCLUSIVE
    assert verdict.value.endswith("closes 90%: 2 seeds; at least 3 needed")
    verdict = _judge(store, "gap_closed", {**GAP_CLOSED, "graft": "graft"})
    assert verdict.verdict == INCONCLUSIVE and verdict.value.endswith("no runs in the store")


def test_tracks_reports_the_largest_differences_per_seed(tmp_path):
    part, case, _ = PER_SEED["tracks"]
    verdict = _judge(_per_seed_store(tmp_path / "s.db", "tracks", {4}), "tracks", part, case)
    assert "accuracy 0.005/0.005/0.005/0.050/0.005; loss 0.01/0.01/0.01/0.01/0.01" in verdict.value
