"""The claim rules over training curves, each on synthetic stores built to make it hold, fail
and be inconclusive; and the ladder's claims on a store built as the paper describes it."""

import math

import numpy as np
import pytest

from optlab.analysis.claims import FAILS, HOLDS, INCONCLUSIVE, judge, load_claims
from optlab.analysis.curves import first_drop, keeps_moving, largest_climb, noise, speed_ratio
from tests.analysis.fake import fake_store

SEEDS = [1, 2, 3, 4, 5]
T = range(0, 10_001, 50)  # the paper's 10k steps at an eval every 50


def _series(f, steps=T):
    return [(t, float(f(t))) for t in steps]


def _flat(value):
    return lambda t: value


def _drop_at(start, to=0.15, before=0.69):
    """0.69 until ``start``, then down to ``to`` over 200 steps."""
    return lambda t: before if t < start else max(to, before - (t - start) * (before - to) / 200)


def _spikes(base, at=(5000, 7500), height=0.7):
    return lambda t: height if t in at else base(t)


def _alternating(base, amplitude):
    return lambda t: base(t) + amplitude * (-1) ** (t // 50)


# Per rule: the claim's part, then (split, name) → the curve of a seed that passes, and of
# one that does not.
PER_SEED = {
    "grows_linearly": (
        {"series": "w/mean", "min_r2": 0.9},
        {("params", "w/mean"): (lambda t: 1 + 1e-4 * t, lambda t: 1 - 1e-4 * t)},
    ),
    "shrinks": (
        {"series": "w/mean"},
        {("params", "w/mean"): (lambda t: 1 - 1e-4 * t, lambda t: 1 + 1e-4 * t)},
    ),
    "grows": (  # in magnitude: −0.4 → −1.4 grows, −0.4 → −0.1 does not
        {"split": "scalars", "series": "pm"},
        {("scalars", "pm"): (lambda t: -0.4 - 1e-4 * t, lambda t: -0.4 + 3e-5 * t)},
    ),
    "keeps_moving": (  # still rising at 10k, or risen and settled by then
        {"split": "outputs", "series": "logit", "direction": "increasing"},
        {("outputs", "logit"): (lambda t: 1e-3 * t, lambda t: 10 * (1 - math.exp(-t / 500)))},
    ),
    "approaches": (  # slowing (0.29× its average speed at the end), or falling steadily
        {"series": "n/mean", "max_ratio": 0.5},
        {
            ("params", "n/mean"): (
                lambda t: 1 - 0.2 * (1 - math.exp(-t / 4000)),
                lambda t: 1 - 1e-5 * t,
            )
        },
    ),
    "unsettled": (  # one of two drifting, or both still
        {"tensors": ["u", "v"], "at_least": 1},
        {
            ("params", "u/mean"): (lambda t: 1e-4 * t, _flat(0.1)),
            ("params", "v/mean"): (_flat(0.1), _flat(0.1)),
        },
    ),
    "jump": (  # the drop at 2,400–2,600, or at 6,000–6,200
        {"at": 2500, "tolerance": 1000, "window": 500, "min_drop": 0.3},
        {("eval", "loss"): (_drop_at(2400), _drop_at(6000))},
    ),
    "climbs": (  # back up to 0.7 from 0.15, or smooth
        {"window": 500, "min": 0.5},
        {("eval", "loss"): (_spikes(_drop_at(2400)), _drop_at(2400))},
    ),
    "smooth": (  # climbs, bounded above: smooth, or with bumps of 0.1
        {"rule": "climbs", "window": 500, "max": 0.05},
        {("eval", "loss"): (_drop_at(2400), _spikes(_drop_at(2400), height=0.25))},
    ),
}
# which seeds fail: none (holds), three of five (fails), one of five (4/5: inconclusive)
FAILING = {HOLDS: set(), FAILS: {1, 2, 3}, INCONCLUSIVE: {1}}


def _store(path, curves, seeds=SEEDS, finals=None, cases=("a", "b")):
    spec = {
        "name": "curves",
        "base": {"model": {"name": "final", "hidden_dim": 8}},
        "cases": {c: {"task.n_eval": 100 + i} for i, c in enumerate(cases)},
        "seeds": seeds,
    }
    finals = finals or (lambda run: {"test_accuracy": 0.7})
    return fake_store(path, spec, finals, curves=curves)


def _per_seed_store(path, rule, failing, seeds=SEEDS):
    _, named = PER_SEED[rule]

    def curves(run):  # case b records nothing
        out = {}
        for (split, name), (good, bad) in named.items() if run.case == "a" else ():
            f = bad if run.spec.train.seed in failing else good
            out.setdefault(split, {})[name] = _series(f)
        return out

    return _store(path, curves, seeds)


def _judge(store, rule, part):
    claim = {"id": rule, "text": rule, "experiment": "curves", "case": "a", "rule": rule}
    (verdict,), tests = judge(store, [{**claim, **part}])
    return verdict, tests


@pytest.mark.parametrize("expected", [HOLDS, FAILS, INCONCLUSIVE])
@pytest.mark.parametrize("rule", PER_SEED)
def test_each_curve_rule_holds_fails_or_is_inconclusive_per_seed(tmp_path, rule, expected):
    store = _per_seed_store(tmp_path / "s.db", rule, FAILING[expected])
    verdict, tests = _judge(store, rule, PER_SEED[rule][0])
    assert verdict.verdict == expected, verdict.value
    passed = 5 - len(FAILING[expected])
    assert f"in {passed}/5 seeds" in verdict.value and tests == 0  # no test to correct for
    assert verdict.checks[0].method == "per seed"
    # decided by every seed passing or half failing: three seeds would do; 4/5 never decides
    assert verdict.seeds_needed == (None if expected == INCONCLUSIVE else 3)


@pytest.mark.parametrize("rule", PER_SEED)
def test_a_curve_rule_from_two_seeds_or_from_no_record_decides_nothing(tmp_path, rule):
    part = PER_SEED[rule][0]
    store = _per_seed_store(tmp_path / "s.db", rule, set(), seeds=[1, 2])
    verdict, _ = _judge(store, rule, part)
    assert verdict.verdict == INCONCLUSIVE and "2 seeds; at least 3 needed" in verdict.value
    assert verdict.seeds_needed == 3  # both seeds pass: three would decide
    verdict, _ = _judge(
        _per_seed_store(tmp_path / "t.db", rule, set()), rule, {**part, "case": "b"}
    )
    assert verdict.verdict == INCONCLUSIVE and verdict.seeds_needed is None
    assert "not recorded (split " in verdict.value, verdict.value


def test_a_jump_after_the_runs_end_is_not_judged(tmp_path):
    short = range(0, 2001, 50)  # the quick profile's 2k steps
    store = _store(tmp_path / "s.db", lambda run: {"eval": {"loss": _series(_flat(0.69), short)}})
    verdict, _ = _judge(store, "jump", PER_SEED["jump"][0])
    assert verdict.verdict == INCONCLUSIVE
    assert verdict.value == "a loss: runs end at step 2000, before step 3500"


AB = {"a": "a", "b": "b"}


def _noise_store(path, amplitude_a, amplitude_b):
    """Eval losses falling as in ``_drop_at(2400)``, a's and b's alternating by ±amplitude(seed)
    around it (each alternation adds about 2·amplitude to the mean absolute change)."""

    def curves(run):
        seed, amplitude = run.spec.train.seed, amplitude_a if run.case == "a" else amplitude_b
        return {"eval": {"loss": _series(_alternating(_drop_at(2400), amplitude(seed)))}}

    return _store(path, curves)


@pytest.mark.parametrize(
    "amplitude_a,amplitude_b,expected",
    [
        (lambda seed: 0.01 * seed, lambda seed: 0.0, HOLDS),  # a noisier in every seed
        (lambda seed: 0.0, lambda seed: 0.01 * seed, FAILS),  # b noisier in every seed
        (lambda seed: 0.01 * (seed <= 3), lambda seed: 0.01 * (seed > 3), INCONCLUSIVE),
        (lambda seed: 0.0, lambda seed: 0.0, INCONCLUSIVE),  # as smooth as each other: p = 1
    ],
)
def test_noisier_compares_the_eval_loss_noise_seed_by_seed(
    tmp_path, amplitude_a, amplitude_b, expected
):
    store = _noise_store(tmp_path / "s.db", amplitude_a, amplitude_b)
    verdict, tests = _judge(store, "noisier", AB)
    assert verdict.verdict == expected, verdict.value
    assert tests == 1 and verdict.checks[0].method == "paired"
    assert verdict.value.startswith("loss noise a 0.0")


def test_the_curve_measures_on_numbers_worked_by_hand():
    steps = np.arange(0, 1001, 100.0)
    # falls 0.69 → 0.42 → 0.15 at 400, 500, 600: no fall of 0.3 ends at 500 (0.69 − 0.42 =
    # 0.27); the first ends at 600, from 400 (0.54): its middle is step 500
    loss = np.array([0.69] * 5 + [0.42, 0.15, 0.15, 0.7, 0.15, 0.15])
    assert first_drop(steps, loss, 500, 0.3) == 500
    assert first_drop(steps, loss, 500, 0.6) is None
    assert largest_climb(steps, loss, 500) == pytest.approx(0.55)  # 0.15 → 0.7 at 800
    assert largest_climb(steps[:8], loss[:8], 500) == 0.0
    # |Δ|: 0.27, 0.27, 0, 0.55, 0.55, 0 over ten steps
    assert noise(steps, loss) == pytest.approx((0.27 * 2 + 0.55 * 2) / 10)
    line = 1 - 1e-3 * steps
    assert speed_ratio(steps, line) == pytest.approx(1.0)
    assert keeps_moving(steps, line, -1) and not keeps_moving(steps, line, 1)
    assert not keeps_moving(steps, np.ones_like(steps), -1)  # settled


# --- The ladder's claims (paper.toml) on a store built as the paper and README describe -----

LADDER = [
    "exact", "center_labels", "learn_offset", "offset_scale", "abs_relu", "plus_minus",
    "centers", "generalized",
]  # fmt: skip
LADDER_CLAIMS = [c for c in load_claims() if c.get("experiment") == "ladder"]


def _ladder_store(path, steps=T, seeds=SEEDS, broken: frozenset[str] = frozenset()):
    """exact at 100%; center_labels' majority logit rising and minority falling; learn_offset
    stale, dropping at 2,400–2,600 and spiking back to 0.7 twice; offset_scale smooth and
    above learn_offset's loss; plus_minus's pair and scale growing, its loss alternating
    by ±0.05; plus_minus's tensors settled, centers' drifting. ``broken`` names the
    behaviours to turn off: "jump" (the drop at 6,000), "logits" (the minority logit settles),
    "grows" (the pair shrinks), "settles" (centers settle too)."""
    smooth = lambda t: 0.2 + 0.5 * math.exp(-t / 1000)  # noqa: E731

    def finals(run):
        loss = {"exact": 0.3133, "learn_offset": 0.15, "offset_scale": 0.25}.get(run.case, 0.3)
        accuracy = 1.0 if run.case == "exact" else 0.9
        return {"test_accuracy": accuracy, "test_loss": loss, "eval_loss": loss}

    def curves(run):
        loss = {
            "learn_offset": _spikes(_drop_at(6000 if "jump" in broken else 2400)),
            "plus_minus": _alternating(smooth, 0.05),
        }.get(run.case, smooth)
        minority = (lambda t: -1.0) if "logits" in broken else (lambda t: -1e-3 * t)
        pm = 0.4 + (-1e-5 if "grows" in broken else 1e-4) * np.array(steps)
        drift = "centers" if "settles" not in broken else None
        means = {
            name: _series((lambda t: 1e-4 * t) if run.case == drift else _flat(0.5), steps)
            for name in ("W/mean", "offset/mean")
        }
        return {
            "eval": {"loss": _series(loss, steps)},
            "outputs": {
                "majority_logit": _series(lambda t: 1e-3 * t, steps),
                "minority_logit": _series(minority, steps),
            },
            "scalars": {
                "plus_minus/0": list(zip(steps, -pm, strict=True)),
                "plus_minus/1": list(zip(steps, pm, strict=True)),
                "scale": _series(lambda t: 1 + 1e-4 * t, steps),
            },
            "params": means,
        }

    spec = {"name": "ladder", "cases": {c: {"model.name": c} for c in LADDER}, "seeds": seeds}
    return fake_store(path, spec, finals, curves=curves)


def test_every_ladder_claim_holds_on_a_store_built_to_agree(tmp_path):
    verdicts, tests = judge(_ladder_store(tmp_path / "s.db"), experiments={"ladder"})
    assert [v.id for v in verdicts] == [c["id"] for c in LADDER_CLAIMS]
    assert {v.id: v.verdict for v in verdicts} == {c["id"]: HOLDS for c in LADDER_CLAIMS}
    assert tests == 4  # noisier ×2, better, settles_more
    by_id = {v.id: v for v in verdicts}
    assert "(at 2475, 2475, 2475, 2475, 2475)" in by_id["learn_offset_jump"].value
    assert "exact test_loss 0.3133" in by_id["exact_perfect_accuracy"].value
    assert "(0.550/0.550/0.550/0.550/0.550)" in by_id["learn_offset_noisy"].value
    assert by_id["learn_offset_jump"].source == "Yu (2022) §3.1"


@pytest.mark.parametrize(
    "broken,claim",
    [
        ("jump", "learn_offset_jump"),
        ("logits", "center_labels_logits_diverge"),
        ("grows", "plus_minus_grows"),
        ("settles", "overparameterized_no_longer_converges"),
    ],
)
def test_a_ladder_claim_fails_where_its_behaviour_is_missing(tmp_path, broken, claim):
    store = _ladder_store(tmp_path / "s.db", broken=frozenset({broken}))
    verdicts = {v.id: v for v in judge(store, experiments={"ladder"})[0]}
    expected = INCONCLUSIVE if broken == "settles" else FAILS  # equal shares: no effect
    assert verdicts[claim].verdict == expected, verdicts[claim].value
    assert {v.verdict for k, v in verdicts.items() if k != claim} == {HOLDS}


def test_the_quick_ladder_cannot_show_a_jump_at_step_2500(tmp_path):
    store = _ladder_store(tmp_path / "s.db", steps=range(0, 2001, 50))
    verdicts = {v.id: v for v in judge(store, experiments={"ladder"})[0]}
    assert verdicts["learn_offset_jump"].verdict == INCONCLUSIVE
    assert "runs end at step 2000, before step 3500" in verdicts["learn_offset_jump"].value
