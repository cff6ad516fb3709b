"""Each claim rule on synthetic stores whose verdict is known by construction."""

import math

import numpy as np
import pytest

from optlab.analysis.claims import (
    CLAIMS_FILE,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Check,
    Verdict,
    cases_named,
    judge,
    load_claims,
    method_note,
)
from tests.analysis.fake import fake_store

CASES = [
    "baseline", "swish", "gelu", "normal_init", "layernorm_normalization", "weight_decay_0",
    "weight_decay_1e-3", "weight_decay_1e-1", "weight_decay_1", "betas_0.85_0.99",
    "betas_0.95_0.99", "betas_0.9_0.98", "betas_0.9_0.995", "decay_l1", "decay_min",
    "hidden_256", "hidden_1024", "hidden_2048",
]  # fmt: skip
# Test accuracy per case under which every final-model claim of the paper holds: normal init
# 1.2 points ahead of the baseline (the paper's gap), every other ablation the paper calls
# small within two points of it, width and small decay in the paper's order.
AS_THE_PAPER = {
    "baseline": 0.770, "swish": 0.700, "gelu": 0.710, "normal_init": 0.782,
    "layernorm_normalization": 0.600, "weight_decay_0": 0.785, "weight_decay_1e-3": 0.778,
    "weight_decay_1e-1": 0.740, "weight_decay_1": 0.600, "betas_0.85_0.99": 0.771,
    "betas_0.95_0.99": 0.769, "betas_0.9_0.98": 0.770, "betas_0.9_0.995": 0.771,
    "decay_l1": 0.765, "decay_min": 0.760, "hidden_256": 0.760, "hidden_1024": 0.775,
    "hidden_2048": 0.780,
}  # fmt: skip
SEEDS = [1, 2, 3, 4, 5]
STEPS = range(0, 1001, 50)
NOISE = np.random.default_rng(7).standard_normal((len(CASES), 16))  # per case and seed
LINEAR = ("dense1.w1", "dense1.w2", "dense2.w1")  # settled, but under L1 (two) and min (all)
DRIFTING = {"decay_l1": LINEAR[:2], "decay_min": LINEAR}


def _final_store(
    path,
    accuracy: dict[str, float],
    final_norm_slope: float = 1e-3,
    noise: float = 0.0,
    seeds: list[int] = SEEDS,
    input_norm=lambda t: 1 - 0.2 * (1 - math.exp(-t / 400)),  # slowing, not yet settled
    eval_loss=lambda t: 0.4 + 0.3 * math.exp(-t / 200),  # smooth
):
    """Each case's accuracy, moved by its seed's shared jitter (the same in every case, as a
    shared data stream would), plus ``noise`` times a draw of its own per case and seed; per
    run, parameter means as the paper describes its baseline (final norm growing linearly,
    input norm approaching a value, the last linear layer still falling, the other linear
    weights settled) except that weight decay 1 holds every tensor still and L1 and min
    decay leave some linear weights drifting; a smooth eval loss."""
    spec = {
        "name": "final",
        "base": {"model": {"name": "final", "hidden_dim": 8}},
        "cases": {c: {"task.n_eval": 100 + i} for i, c in enumerate(CASES)},  # distinct runs
        "seeds": seeds,
    }

    def finals(run):
        seed = run.spec.train.seed
        jitter = 0.002 * (seed - 3) + noise * NOISE[CASES.index(run.case), seed]
        value = accuracy[run.case] + jitter
        return {"test_accuracy": value, "eval_accuracy": value, "eval_loss": eval_loss(STEPS[-1])}

    def params(run):
        seed, still = run.spec.train.seed, run.case == "weight_decay_1"
        means = {
            "final.norm": lambda t: 1 + final_norm_slope * t + 1e-4 * seed * (t % 300 == 0),
            "dense1.norm": input_norm,
            "dense2.w2": lambda t: -1e-4 * t,
            **{w: lambda t: 0.01 for w in LINEAR},
            **{w: lambda t: 0.01 + 1e-4 * t for w in DRIFTING.get(run.case, ())},
        }
        return {
            f"{name}/mean": [(t, f(0 if still else t)) for t in STEPS] for name, f in means.items()
        }

    def curves(run):
        return {"eval": {"loss": [(t, eval_loss(t)) for t in STEPS]}}

    return fake_store(path, spec, finals, params, curves=curves)


def _by_id(store, experiments):
    verdicts, tests = judge(store, experiments=experiments)
    return {v.id: v for v in verdicts}, tests


def test_every_claim_of_the_paper_quotes_its_source_by_name():
    for claim in load_claims(CLAIMS_FILE):
        assert claim["source"].startswith(("Yu (2022) §", "AdamWAnalysis README, ")), claim["id"]
        assert len(claim["quote"]) > 40, claim["id"]  # a sentence, or the clause tested
    assert len({c["id"] for c in load_claims(CLAIMS_FILE)}) == 23


def test_claim_ids_are_unique_across_the_catalog():
    ids = [c["id"] for c in load_claims()]
    assert len(ids) == len(set(ids)) > 23


@pytest.mark.parametrize(
    "change,error",
    [
        ({"quote": ""}, "quote is missing"),
        ({"source": "002 §3.3.1"}, "cites a file number"),
        ({"rule": "nonsense"}, "is not one of"),
    ],
)
def test_a_claim_without_a_quote_or_named_source_is_refused(tmp_path, change, error):
    claim = {"id": "c", "text": "t", "quote": "q", "source": "Yu (2022) §1", "rule": "approx"}
    path = tmp_path / "claims.toml"
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in {**claim, **change}.items()]
    path.write_text("[[claims]]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=error):
        load_claims(path)


def test_every_final_model_claim_holds_on_a_store_built_to_agree(tmp_path):
    verdicts, tests = _by_id(_final_store(tmp_path / "s.db", AS_THE_PAPER), {"final"})
    assert {k: v.verdict for k, v in verdicts.items()} == {
        c["id"]: HOLDS for c in load_claims() if c.get("experiment") == "final"
    }
    assert len(verdicts) == 15
    # better ×2, two trends, better + settles_more, the width trend: Holm over seven
    assert tests == 7
    # Every comparison is paired by seed, which cancels the shared jitter: three seeds would do.
    checks = [c for v in verdicts.values() for c in v.checks]
    assert {c.method for c in checks} == {"t", "paired", "per seed"}
    assert "baseline − swish = +0.0700 [+0.0700, +0.0700] paired n=5" in (
        verdicts["relu_beats_swish_gelu"].value
    )
    assert "normal_init − baseline = +0.0120" in verdicts["init_gap"].value
    assert "settled share weight_decay_1 1.00 vs baseline 0.50" in (
        verdicts["large_decay_biased_but_settles"].value
    )
    assert "(per seed: 3/3/3/3/3)" in verdicts["l1_min_weights_unsettled"].value
    assert "(per seed: 4/4/4/4/4)" in verdicts["l1_min_weights_unsettled"].value
    assert {v.seeds_needed for v in verdicts.values()} == {3}
    assert verdicts["init_gap"].quote.endswith("76.8% for Gaussian initialization.")


def test_claims_fail_where_the_store_disagrees(tmp_path):
    against = {
        **AS_THE_PAPER,
        "baseline": 0.700,  # far from 77%, and worse than swish and gelu
        "swish": 0.760,
        "gelu": 0.760,
        "normal_init": 0.690,  # 1 point behind the baseline, not 1.2 ahead
        "layernorm_normalization": 0.710,  # not 5 points worse
        "weight_decay_1": 0.700,
        "decay_min": 0.650,  # 5 points from the baseline
    }
    store = _final_store(
        tmp_path / "s.db",
        against,
        final_norm_slope=-1e-3,
        input_norm=lambda t: 1 - 1e-4 * t,  # falls at a constant speed: not slowing
        eval_loss=lambda t: 0.4 + 0.1 * (t % 200 == 0),  # bumps of 0.1
    )
    verdicts, _ = _by_id(store, {"final"})
    for claim in (
        "baseline_accuracy",
        "relu_beats_swish_gelu",
        "init_gap",
        "rms_normalization_poor",
        "decay_type_matters_little",
        "adamw_robust",
        "final_layernorm_grows",  # the final norm now shrinks
        "input_layernorm_approaches",
    ):
        assert verdicts[claim].verdict == FAILS, (claim, verdicts[claim].value)
    assert "climbs ≤ 0.05 within 500 steps (0.100/" in verdicts["baseline_accuracy"].value
    assert verdicts["init_differs_little"].verdict == HOLDS  # −0.01 is still little


def test_overlapping_cells_are_inconclusive(tmp_path):
    # Differences of 0.001 and 0.002 against per-seed noise of sd 0.003 in each case.
    near = {**AS_THE_PAPER, "baseline": 0.751, "gelu": 0.750, "swish": 0.749}
    verdicts, _ = _by_id(_final_store(tmp_path / "s.db", near, noise=0.003), {"final"})
    assert verdicts["baseline_accuracy"].verdict == INCONCLUSIVE  # straddles 0.75
    assert verdicts["relu_beats_swish_gelu"].verdict == INCONCLUSIVE
    assert verdicts["relu_beats_swish_gelu"].seeds_needed > 5  # more seeds would tell


def test_fewer_than_three_seeds_decide_nothing(tmp_path):
    verdicts, tests = _by_id(_final_store(tmp_path / "s.db", AS_THE_PAPER, seeds=[1, 2]), {"final"})
    assert {v.verdict for v in verdicts.values()} == {INCONCLUSIVE}
    assert tests == 0  # no test from two seeds, so none to correct for
    for v in verdicts.values():
        assert all("2 seeds; at least 3 needed" in c.value for c in v.checks), v.value
        assert "[" not in v.value  # no interval quoted
    assert verdicts["baseline_accuracy"].checks[0].value == (
        "baseline test_accuracy 0.7670: 2 seeds; at least 3 needed"
    )
    # the estimate still tells how many seeds would decide: 0.767 ± 0.0014 is far inside 0.77 ± 0.02
    assert verdicts["baseline_accuracy"].seeds_needed == 3


def _pair_store(path, paired: bool):
    """Cases a and b over six seeds whose shared draw moves both by ±0.02; a is better by
    0.004 ± 0.0005 in every seed. Paired, both cases ran every seed; unpaired, a ran seeds
    1–3 and b seeds 4–6."""
    spec = {
        "name": "pair",
        "base": {"model": {"name": "final", "hidden_dim": 8}},
        "cases": {"a": {"task.n_eval": 100}, "b": {"task.n_eval": 101}},
        "seeds": [1, 2, 3, 4, 5, 6],
    }
    shift = {1: 0.02, 2: -0.02, 3: 0.0, 4: 0.02, 5: -0.02, 6: 0.0}
    own = {1: 0.0005, 2: -0.0005, 3: 0.0, 4: -0.0005, 5: 0.0005, 6: 0.0}

    def finals(run):
        seed = run.spec.train.seed
        effect = 0.004 + own[seed] if run.case == "a" else 0.0
        return {"test_accuracy": 0.7 + shift[seed] + effect, "eval_loss": 0.5}

    def done(run):
        return paired or (run.case == "a") == (run.spec.train.seed <= 3)

    return fake_store(path, spec, finals, done=done)


PAIR_CLAIMS = [
    {"id": "better", "text": "a beats b", "rule": "better", "a": "a", "b": "b"},
    {"id": "trend", "text": "rises from b to a", "rule": "trend", "cases": ["b", "a"]}
    | {"x": [0, 1], "direction": "increasing"},
]
PAIR_CLAIMS = [{"experiment": "pair", "metric": "test_accuracy", **c} for c in PAIR_CLAIMS]


@pytest.mark.parametrize(
    "paired,expected,method", [(True, HOLDS, "paired n=6"), (False, INCONCLUSIVE, "Welch n=3/3")]
)
def test_pairing_by_seed_decides_what_welch_cannot(tmp_path, paired, expected, method):
    verdicts, tests = judge(_pair_store(tmp_path / "s.db", paired), PAIR_CLAIMS)
    better, trend = verdicts
    assert tests == 2 and better.verdict == trend.verdict == expected
    assert method in better.value
    assert ("per-seed slopes, paired n=6" if paired else "one slope over 6 runs") in trend.value
    # paired: differences 0.004 ± 0.0004 (p ≈ 1e-6); unpaired: the ±0.02 shifts swamp them
    assert (better.checks[0].p < 1e-5) == paired and (better.checks[0].p > 0.5) != paired


def test_seeds_needed_on_a_constructed_case(tmp_path):
    # z: −2..2 scaled to sd 1. a = 0.76 + 0.02·z, b = 0.75 + 0.04·z: a's mean is 0.01 inside
    # 0.77 ± 0.02 and a − b = 0.01 − 0.02·z is 0.01 from zero, both with sd 0.02. So both need
    # the n with t_{0.975,n−1}·0.02/√n < 0.01 (one test: its Bonferroni level is 95%):
    # n = 18, as 2.109816·0.02/√18 = 0.00995 and, at 17, 2.119905·0.02/√17 = 0.01028.
    z = dict(zip(SEEDS, np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) / math.sqrt(2.5), strict=True))
    spec = {
        "name": "power",
        "base": {"model": {"name": "final", "hidden_dim": 8}},
        "cases": {"a": {"task.n_eval": 100}, "b": {"task.n_eval": 101}},
        "seeds": SEEDS,
    }

    def finals(run):
        seed = run.spec.train.seed
        value = 0.76 + 0.02 * z[seed] if run.case == "a" else 0.75 + 0.04 * z[seed]
        return {"test_accuracy": value, "eval_loss": 0.5}

    claims = [
        {"id": "approx", "rule": "approx", "case": "a", "target": 0.77, "tolerance": 0.02},
        {"id": "better", "rule": "better", "a": "a", "b": "b"},
    ]
    claims = [
        {"experiment": "power", "metric": "test_accuracy", "text": c["id"], **c} for c in claims
    ]
    (approx, better), tests = judge(fake_store(tmp_path / "s.db", spec, finals), claims)
    assert tests == 1
    assert approx.verdict == INCONCLUSIVE  # 0.76 ± 2.776·0.02/√5 = 0.76 ± 0.0248 straddles 0.75
    assert better.verdict == INCONCLUSIVE  # t = 0.01/(0.02/√5) = 1.118, p = 0.33
    assert better.checks[0].p == pytest.approx(0.326, abs=1e-3)
    assert approx.seeds_needed == better.seeds_needed == 18


def test_a_claims_seeds_are_the_fewest_to_fail_it_or_the_most_to_hold_it():
    def verdict(*checks):
        return Verdict("id", "text", "source", "paper", list(checks)).seeds_needed

    holds5, holds18 = (
        Check("a", leaning=HOLDS, seeds_needed=5),
        Check("b", leaning=HOLDS, seeds_needed=18),
    )
    assert verdict(holds5, holds18) == 18  # both must hold
    assert verdict(holds5, holds18, Check("c", leaning=FAILS, seeds_needed=7)) == 7  # one failure
    assert verdict(holds5, Check("c", leaning=None)) is None  # c sits on its threshold
    assert verdict(holds5, Check("c", leaning=HOLDS)) is None  # c's spread is unknown
    assert verdict() is None


def test_method_note_names_the_intervals_and_pairing():
    note = method_note(6)
    assert "Student-t" in note and "paired" in note and "Holm-corrected over 6 tests" in note


def test_the_reports_verdict_table_shows_the_seeds_needed(tmp_path):
    from optlab.viz.report import _claims_section

    page = _claims_section(_final_store(tmp_path / "s.db", AS_THE_PAPER), {"final"})
    assert "<th>seeds needed</th>" in page
    assert page.count("</b></td><td>3</td></tr>") == 15  # every claim: three seeds would do
    # each claim with the sentence it tests, cited by name
    assert "<q>There&#x27;s very little difference in the different ablations" in page
    assert "<td>Yu (2022) §3.3.6</td>" in page


def test_cases_named_reads_every_field_of_every_part():
    known = {("e", c) for c in ("base", "x", "y", "z", "g")} | {("f", "x")}
    claim = {
        "id": "c",
        "experiment": "e",
        "case": "base",  # a claim-level default each part inherits
        "parts": [
            {"rule": "better", "a": "x", "b": ["y", "base"]},
            {"rule": "trend", "cases": ["z", "not_a_case"], "x": [0, 1]},
            {"rule": "graft_closes", "graft": "g"},  # a rule's own key
        ],
    }
    assert cases_named(claim, known) == {("e", c) for c in ("base", "x", "y", "z", "g")}
    assert cases_named({"id": "d", "experiment": "f", "a": "x", "b": "y"}, known) == {("f", "x")}
