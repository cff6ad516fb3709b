"""Each claim rule on synthetic stores whose verdict is known by construction."""

import pytest

from optlab.analysis.claims import FAILS, HOLDS, INCONCLUSIVE, judge, load_claims
from tests.analysis.fake import fake_store

CASES = [
    "baseline", "swish", "gelu", "normal_init", "layernorm_normalization", "weight_decay_0",
    "weight_decay_1e-3", "weight_decay_1e-1", "weight_decay_1", "betas_0.85_0.99",
    "betas_0.95_0.99", "betas_0.9_0.98", "betas_0.9_0.995", "decay_l1", "decay_min",
    "hidden_256", "hidden_1024", "hidden_2048",
]  # fmt: skip
# Test accuracy per case under which every final-model claim of the paper holds.
AS_THE_PAPER = {
    "baseline": 0.770, "swish": 0.700, "gelu": 0.710, "normal_init": 0.772,
    "layernorm_normalization": 0.600, "weight_decay_0": 0.790, "weight_decay_1e-3": 0.780,
    "weight_decay_1e-1": 0.740, "weight_decay_1": 0.600, "betas_0.85_0.99": 0.771,
    "betas_0.95_0.99": 0.769, "betas_0.9_0.98": 0.770, "betas_0.9_0.995": 0.771,
    "decay_l1": 0.740, "decay_min": 0.720, "hidden_256": 0.750, "hidden_1024": 0.790,
    "hidden_2048": 0.810,
}  # fmt: skip
SEEDS = [1, 2, 3, 4, 5]
STEPS = range(0, 1001, 100)


def _final_store(path, accuracy: dict[str, float], final_norm_slope: float = 1e-3):
    spec = {
        "name": "final",
        "base": {"model": {"name": "final", "hidden_dim": 8}},
        "cases": {c: {"task.n_eval": 100 + i} for i, c in enumerate(CASES)},  # distinct runs
        "seeds": SEEDS,
    }

    def finals(run):
        jitter = 0.002 * (run.spec.train.seed - 3)
        return {"test_accuracy": accuracy[run.case] + jitter, "eval_loss": 0.5}

    def params(run):
        seed = run.spec.train.seed
        return {
            "final.norm/mean": [
                (t, 1 + final_norm_slope * t + 1e-4 * seed * (t % 300 == 0)) for t in STEPS
            ],
            "dense1.norm/mean": [(t, 1 - 1e-4 * t) for t in STEPS],
        }

    return fake_store(path, spec, finals, params)


def _by_id(store, experiments):
    verdicts, tests = judge(store, experiments=experiments)
    return {v.id: v for v in verdicts}, tests


def test_every_final_model_claim_holds_on_a_store_built_to_agree(tmp_path):
    verdicts, tests = _by_id(_final_store(tmp_path / "s.db", AS_THE_PAPER), {"final"})
    assert {k: v.verdict for k, v in verdicts.items()} == {
        c["id"]: HOLDS for c in load_claims() if c["experiment"] == "final"
    }
    assert tests == 2 + 1 + 2 + 1  # better ×2, trend, better ×2, trend: Holm over six


def test_claims_fail_where_the_store_disagrees(tmp_path):
    against = {
        **AS_THE_PAPER,
        "baseline": 0.700,  # far from 77%, and worse than swish and gelu
        "swish": 0.760,
        "gelu": 0.760,
        "normal_init": 0.760,  # 6 points from the baseline
        "layernorm_normalization": 0.710,  # not 5 points worse
        "weight_decay_1": 0.700,
    }
    store = _final_store(tmp_path / "s.db", against, final_norm_slope=-1e-3)
    verdicts, _ = _by_id(store, {"final"})
    assert verdicts["baseline_accuracy"].verdict == FAILS
    assert verdicts["relu_beats_swish_gelu"].verdict == FAILS
    assert verdicts["init_differs_little"].verdict == FAILS
    assert verdicts["rms_normalization_poor"].verdict == FAILS
    assert verdicts["layernorm_weights"].verdict == FAILS  # the final norm now shrinks


def test_overlapping_cells_are_inconclusive(tmp_path):
    near = {**AS_THE_PAPER, "baseline": 0.751, "gelu": 0.750, "swish": 0.749}
    verdicts, _ = _by_id(_final_store(tmp_path / "s.db", near), {"final"})
    assert verdicts["baseline_accuracy"].verdict == INCONCLUSIVE  # straddles 0.75
    assert verdicts["relu_beats_swish_gelu"].verdict == INCONCLUSIVE


@pytest.mark.parametrize("l1_settles,expected", [(True, HOLDS), (False, FAILS)])
def test_l1_settles_and_lowers_the_loss(tmp_path, l1_settles, expected):
    spec = {
        "name": "optimization",
        "base": {"model": {"name": "centers", "hidden_dim": 4}},
        "cases": {"l2": {"optimizer.decay": "l2"}, "l1": {"optimizer.decay": "l1"}},
        "seeds": SEEDS,
    }

    def finals(run):
        loss = (0.30 if run.case == "l1" else 0.35) + 0.001 * run.spec.train.seed
        return {"test_loss": loss, "eval_loss": loss}

    def params(run):
        seed = run.spec.train.seed
        still = run.case == ("l1" if l1_settles else "l2")
        wobble = [(t, 1.0 + 0.01 * ((t // 100 + seed) % 2)) for t in STEPS]
        drift = [(t, 1.0 + 1e-3 * t) for t in STEPS]
        return {"centers/mean": wobble if still else drift, "scale/mean": wobble}

    store = fake_store(tmp_path / "o.db", spec, finals, params)
    eval_rows = [(r, "eval", "loss", t, 0.3) for r in store.runs()["id"] for t in STEPS]
    store.log(eval_rows)
    verdicts, tests = _by_id(store, {"optimization"})
    assert tests == 2
    assert verdicts["l1_lower_loss_and_settles"].verdict == expected
