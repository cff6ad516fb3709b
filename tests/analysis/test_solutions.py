"""The memorize-or-generalize rules, each on synthetic stores of the essay's toy built to make
it hold, fail and be inconclusive; and the theory's mg claims on stores built as measured."""

import math
import tomllib

import pytest

from optlab.analysis.claims import CLAIMS_DIR, FAILS, HOLDS, INCONCLUSIVE, RULES, judge, load_claims
from optlab.analysis.solutions import l_inf, min_norm
from tests.analysis.fake import fake_store

SEEDS = [0, 1, 2, 3, 4]
T = range(0, 20_001, 200)  # the paper profile's 20k steps at an eval every 200
LONG = range(0, 1_000_001, 10_000)  # 1M steps = 10/(ηλ) at η = 1e-3, λ = 1e-2
M_STAR, G_STAR = min_norm(100)  # 1/101, 100/101


def _rise(t, tau=300.0):
    """0 → 1 with time constant tau: how fast the toy's optimizers fit."""
    return 1 - math.exp(-t / tau)


def sgd_path(seed, t):  # in the span (g = 100·m̄), to the min-L2 fit
    return M_STAR * _rise(t), G_STAR * _rise(t)


def adam_path(seed, t):  # the same speed on every coordinate, to ½, ½
    return 0.5 * _rise(t), 0.5 * _rise(t)


def phase_change_path(seed, t):  # to ½, ½, then after 100k steps on to the min-L2 fit
    late = _rise(max(0.0, t - 100_000), tau=50_000)
    m = 0.5 * _rise(t) * (1 - late) + M_STAR * late
    return m, _rise(t) - m


def batch_path(share):
    """A minibatch run whose memorizers' share m̄/(m̄ + g) is ``share(seed, t)``, fitting."""
    return lambda seed, t: (share(seed, t) * _rise(t), (1 - share(seed, t)) * _rise(t))


def _grokking(seeds):
    """Share 0.5 until step 10,000, then 0.1, in ``seeds``; 0.24 from the start in the rest."""
    return batch_path(lambda seed, t: (0.5 if t < 10_000 else 0.1) if seed in seeds else 0.24)


def _store(path, paths, seeds=SEEDS, steps=T, experiment="mg"):
    """The toy's cases sgd, adam, full (AdamW, full batch) and batch (AdamW, 10 of 100),
    whose (m̄, g) at step t is ``paths[case](seed, t)`` (cases not in ``paths`` record no
    scalars), at an eval every ``steps``."""
    decayed = {"optimizer.name": "adamw", "optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-2}
    spec = {
        "name": experiment,
        "base": {
            "task": {"name": "mg_toy", "samples": 100},
            "model": {"name": "linear"},
            "train": {"steps": steps[-1], "eval_every": steps[1]},
        },
        "cases": {
            "sgd": {"optimizer.name": "sgd", "optimizer.lr": 0.5},
            "adam": {"optimizer.name": "adam", "optimizer.lr": 1e-3},
            "full": decayed,
            "batch": {**decayed, "train.batch_size": 10},
        },
        "seeds": seeds,
    }

    def curves(run):
        if run.case not in paths:
            return {}
        points = [(t, *paths[run.case](run.spec.train.seed, t)) for t in steps]
        return {
            "scalars": {
                "memorizer_mean": [(t, m) for t, m, _ in points],
                "generalizer": [(t, g) for t, _, g in points],
            }
        }

    return fake_store(path, spec, lambda run: {"eval_loss": 0.0}, curves=curves)


def _judge(store, part, experiment="mg"):
    claim = {"id": part["rule"], "text": part["rule"], "experiment": experiment, **part}
    (verdict,), tests = judge(store, [claim])
    return verdict, tests


def _noisy(path, size):
    """``path`` with m̄ off by size·(seed − 2): a spread across the seeds, mean unchanged."""
    return lambda seed, t: (path(seed, t)[0] + size * (seed - 2), path(seed, t)[1])


def test_the_two_fits_the_essay_names():
    assert min_norm(100) == (1 / 101, 100 / 101)
    m, g = min_norm(100)
    assert m + g == pytest.approx(1) and g == pytest.approx(100 * m)  # fits, in the span
    assert l_inf(100) == (0.5, 0.5)


REACHES = {"rule": "reaches", "case": "sgd", "solution": "min_norm", "tolerance": 1e-3}


@pytest.mark.parametrize(
    "path,expected",
    [
        (sgd_path, HOLDS),
        (adam_path, FAILS),  # ½, ½: 0.49 from the memorizers' 1/101
        # m̄ centred on the band's edge, 1/101 + 0.001, spread 3e-4 across the seeds
        (_noisy(lambda s, t: (M_STAR + 1e-3, G_STAR), 3e-4), INCONCLUSIVE),
    ],
)
def test_reaches_judges_the_final_values_against_the_named_fit(tmp_path, path, expected):
    verdict, tests = _judge(_store(tmp_path / "s.db", {"sgd": path}), REACHES)
    assert verdict.verdict == expected, verdict.value
    assert tests == 0 and [c.method for c in verdict.checks] == ["t", "t"]
    assert "sgd generalizer at step 20,000" in verdict.value


def test_identical_seeds_are_one_computation_judged_on_its_value(tmp_path):
    verdict, _ = _judge(_store(tmp_path / "s.db", {"sgd": sgd_path}), REACHES)
    assert verdict.checks[0].value == (
        "sgd memorizers' mean at step 20,000 0.00990 n=5 (target 0.00990 ± 0.001), "
        "identical in 5 seeds"
    )
    assert verdict.seeds_needed == 3  # a zero spread: the fewest seeds that show it
    # ... and still from three seeds, whose agreement shows that the seed plays no part
    verdict, _ = _judge(_store(tmp_path / "t.db", {"sgd": sgd_path}, seeds=[0, 1]), REACHES)
    assert verdict.verdict == INCONCLUSIVE
    assert "2 seeds; at least 3 needed" in verdict.value


def test_the_longest_runs_decide(tmp_path):
    """A store with a profile's short runs (at ½, ½ by step 2,000) beside 20k-step ones."""
    path = tmp_path / "s.db"
    _store(path, {"sgd": adam_path}, steps=range(0, 2_001, 50)).close()
    verdict, _ = _judge(_store(path, {"sgd": sgd_path}), REACHES)
    assert verdict.verdict == HOLDS and "n=5" in verdict.value, verdict.value


def _fail_in(seeds, good, bad):
    return lambda seed, t: (bad if seed in seeds else good)(seed, t)


# which seeds stray: none (holds), three of five (fails), one (4/5 pass: inconclusive)
STRAYING = {HOLDS: set(), FAILS: {0, 1, 2}, INCONCLUSIVE: {0}}
TRACKS = {  # rule: (part, the path that passes, the path that does not)
    "in_span": ({"case": "sgd", "tolerance": 1e-4}, sgd_path, adam_path),
    "same_speed": ({"case": "sgd", "tolerance": 1e-3}, adam_path, sgd_path),
    "split_from_start": (
        {"case": "batch", "tolerance": 0.05},
        _grokking(set()),
        _grokking(set(SEEDS)),
    ),
}


@pytest.mark.parametrize("expected", [HOLDS, FAILS, INCONCLUSIVE])
@pytest.mark.parametrize("rule", TRACKS)
def test_the_per_seed_rules_hold_fail_or_are_inconclusive(tmp_path, rule, expected):
    part, good, bad = TRACKS[rule]
    store = _store(tmp_path / "s.db", {part["case"]: _fail_in(STRAYING[expected], good, bad)})
    verdict, _ = _judge(store, {"rule": rule, **part})
    assert verdict.verdict == expected, verdict.value
    assert f"in {5 - len(STRAYING[expected])}/5 seeds" in verdict.value


def test_split_from_start_reads_the_first_evaluation_after_step_0(tmp_path):
    store = _store(tmp_path / "s.db", {"batch": _grokking({0, 1, 2})})
    verdict, _ = _judge(store, {"rule": "split_from_start", **TRACKS["split_from_start"][0]})
    # share 0.5 at step 200 in three seeds, 0.24 in two; it ends at 0.1 and 0.24
    assert verdict.value == (
        "batch: memorizers' share at step 200 (0.396) within 0.05 of its final 0.156 in 2/5 seeds"
    )


PHASE = {
    "rule": "phase_change",
    "case": "full",
    "linf_tolerance": 0.05,
    "min_norm_tolerance": 0.05,
    "decay_times": 5,
}


@pytest.mark.parametrize(
    "path,steps,expected,judged",
    [
        (phase_change_path, LONG, HOLDS, "judged at step 1,000,000 = 10/(ηλ)"),
        (adam_path, LONG, FAILS, "ends at m̄ 0.5000, g 0.5000"),  # at ½, ½ after 10/(ηλ)
        (sgd_path, T, FAILS, "m̄ peaks at 0.0099"),  # generalizes without memorizing first
        (adam_path, T, INCONCLUSIVE, "a fail needs runs of 500,000 steps (5/(ηλ))"),
    ],
)
def test_phase_change_is_judged_on_the_longest_run(tmp_path, path, steps, expected, judged):
    verdict, _ = _judge(_store(tmp_path / "s.db", {"full": path}, steps=steps), PHASE)
    assert verdict.verdict == expected, verdict.value
    assert judged in verdict.value and "identical in 5 seeds" in verdict.value


def test_phase_change_at_20k_steps_says_so(tmp_path):
    verdict, _ = _judge(_store(tmp_path / "s.db", {"full": adam_path}), PHASE)
    assert verdict.value.startswith("full judged at step 20,000 = 0.2/(ηλ): m̄ peaks at 0.5000")
    assert verdict.seeds_needed is None  # longer runs would decide it, not more seeds


LESS = {"rule": "memorizes_less", "a": "batch", "b": "full", "margin": 0.1}


@pytest.mark.parametrize(
    "share,expected",
    [
        (0.24, HOLDS),  # 0.26 below full batch's ½
        (0.48, FAILS),  # 0.02 below
        (0.4, INCONCLUSIVE),  # 0.1 below, give or take the seeds' 0.01
    ],
)
def test_memorizes_less_compares_the_final_memorizers_seed_by_seed(tmp_path, share, expected):
    paths = {"full": adam_path, "batch": batch_path(lambda seed, t: share + 0.01 * (seed - 2))}
    verdict, tests = _judge(_store(tmp_path / "s.db", paths), LESS)
    assert verdict.verdict == expected, verdict.value
    assert verdict.checks[0].method == "paired" and tests == 0
    assert verdict.value.startswith(f"final m̄ batch − full = {share - 0.5:+.4f} [")


@pytest.mark.parametrize("rule", ["reaches", "in_span", "phase_change", "memorizes_less"])
def test_without_runs_or_scalars_nothing_is_decided(tmp_path, rule):
    part = {"reaches": REACHES, "phase_change": PHASE, "memorizes_less": LESS}.get(
        rule, {"rule": rule, "case": "sgd", "tolerance": 1e-4}
    )
    verdict, _ = _judge(_store(tmp_path / "s.db", {}), part)
    assert verdict.verdict == INCONCLUSIVE
    assert "not recorded (split scalars)" in verdict.value, verdict.value
    verdict, _ = _judge(_store(tmp_path / "s.db", {}), part, experiment="elsewhere")
    assert verdict.value.endswith("no runs in the store")


# --- The theory's mg claims (theory.toml) on stores built as measured ---------------------

MG_IDS = [
    "mg_sgd_min_norm",
    "mg_momentum_min_norm",
    "mg_adam_linf",
    "mg_adamw_full_batch_phase_change",
    "mg_minibatch_generalizes_more",
]


def test_the_theory_file_loads_the_mg_claims_with_known_rules():
    claims = {c["id"]: c for c in load_claims(CLAIMS_DIR / "theory.toml")}
    assert set(MG_IDS) <= set(claims)
    for i in MG_IDS:
        claim = claims[i]
        assert claim["experiment"] == "mg_toy"
        assert claim["source"].startswith("The 2023 essay on AdamW, "), i
        assert all(part["rule"] in RULES for part in claim.get("parts", [claim]))
    assert {c["id"] for c in load_claims()} >= set(MG_IDS)  # loaded with the paper's


def _mg_store(path, full_batch_adamw, adamw_steps=None):
    """The catalog's mg_toy as measured: SGD and momentum on the min-L2 fit, Adam on ½, ½,
    minibatch runs at a share of 0.24 from the start; full-batch AdamW on ``full_batch_adamw``,
    at ``adamw_steps`` if given."""
    spec = tomllib.loads((CLAIMS_DIR.parent / "mg_toy.toml").read_text())
    spec.pop("profiles")
    if adamw_steps:
        spec["cases"]["adamw_full"]["train.steps"] = adamw_steps[-1]
        spec["cases"]["adamw_full"]["train.eval_every"] = adamw_steps[1]
    paths = {
        "sgd": sgd_path,
        "sgd_momentum": sgd_path,
        "adam": adam_path,
        "adamw_full": full_batch_adamw,
        "adamw_batch10": batch_path(lambda seed, t: 0.24 + 1e-3 * (seed - 2)),
        "adam_batch10": batch_path(lambda seed, t: 0.24),
    }

    def curves(run):
        steps = adamw_steps if adamw_steps and run.case == "adamw_full" else T
        points = [(t, *paths[run.case](run.spec.train.seed, t)) for t in steps]
        return {
            "scalars": {
                "memorizer_mean": [(t, m) for t, m, _ in points],
                "generalizer": [(t, g) for t, _, g in points],
            }
        }

    return fake_store(path, spec, lambda run: {"eval_loss": 0.0}, curves=curves)


@pytest.mark.parametrize(
    "full_batch_adamw,steps,phase_change",
    [
        (adam_path, None, INCONCLUSIVE),  # at ½, ½ at 20k steps: the decay has not acted yet
        (adam_path, LONG, FAILS),  # still there after 1M steps: the essay's edit
        (phase_change_path, LONG, HOLDS),  # the essay's first claim
    ],
)
def test_the_mg_claims_on_stores_built_as_measured(tmp_path, full_batch_adamw, steps, phase_change):
    store = _mg_store(tmp_path / "s.db", full_batch_adamw, steps)
    verdicts, tests = judge(store, experiments={"mg_toy"})
    got = {v.id: v.verdict for v in verdicts}
    minibatch = HOLDS if phase_change != HOLDS else FAILS  # ends below the minibatch runs
    assert got == {
        "mg_sgd_min_norm": HOLDS,
        "mg_momentum_min_norm": HOLDS,
        "mg_adam_linf": HOLDS,
        "mg_adamw_full_batch_phase_change": phase_change,
        "mg_minibatch_generalizes_more": minibatch,
    }, {v.id: v.value for v in verdicts}
    assert tests == 0
