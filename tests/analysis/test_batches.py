"""Runs at equal steps and at equal samples seen, on a synthetic store whose numbers are
chosen so that every entry of the table is a hand-computed one."""

import math

import pandas as pd
import pytest

from optlab.analysis.batches import budget_table, by_rule, samples_seen, varies_batch
from tests.analysis.fake import fake_store

CONTROL = {
    "train.batch_controller": "norm_test",
    "train.batch_theta": 1.0,
    "train.batch_max": 64,
}
SPEC = {
    "name": "ab",
    "base": {
        "model": {"name": "centers"},
        "train": {"steps": 100, "eval_every": 50, "data": "dataset", "batch_size": 8},
    },
    "cases": {"fixed_8": {}, "fixed_32": {"train.batch_size": 32}, "norm_test": CONTROL},
    "seeds": [0, 1],
}
EVAL = {"fixed_8": [0.5, 0.6, 0.7], "fixed_32": [0.5, 0.8, 0.9], "norm_test": [0.5, 0.7, 0.95]}
TEST = {"fixed_8": 0.70, "fixed_32": 0.90, "norm_test": 0.94}


def _curves(run):
    """Eval accuracy at steps 0, 50, 100; the controller's recorded samples 0, 400, 2000 and
    batch 8, 32, 32; the fixed batches' noise scale 16 at their last evaluation."""
    out = {"eval": {"accuracy": list(zip((0, 50, 100), EVAL[run.case], strict=True))}}
    if run.case == "norm_test":
        out["batch"] = {
            "samples": [(0, 0.0), (50, 400.0), (100, 2000.0)],
            "batch_size": [(0, 8.0), (50, 32.0), (100, 32.0)],
        }
    else:
        out["grad_stats"] = {"noise_scale": [(50, 4.0), (100, 16.0)]}
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    store = fake_store(
        tmp_path_factory.mktemp("ab") / "s.db",
        SPEC,
        lambda run: {"test_accuracy": TEST[run.case] + 0.02 * run.spec.train.seed},
        curves=_curves,
    )
    assert varies_batch(store.runs("ab"))
    out = budget_table(store, "ab").set_index("case")
    store.close()
    return out


def test_samples_are_recorded_or_the_step_times_a_fixed_batch():
    m = pd.DataFrame(
        {"split": ["eval", "eval"], "name": ["accuracy"] * 2, "step": [0, 50], "value": [0.5] * 2}
    )
    assert samples_seen(m, 8).to_dict() == {0: 0.0, 50: 400.0}


def test_equal_steps_and_equal_samples_by_hand(table):
    """S* = 800, fixed_8's samples after 100 steps. fixed_32 saw 1,600 by step 50: at 800,
    halfway, eval accuracy 0.5 + ½·0.3 = 0.65 at step 25. The controller saw 400 by step 50
    and 2,000 by 100: 800 is a quarter of the way, 0.7 + ¼·0.25 = 0.7625 at step 62.5."""
    assert table["budget"].tolist() == [800.0] * 3
    assert table["samples"].to_dict() == {"fixed_8": 800.0, "fixed_32": 3200.0, "norm_test": 2000.0}
    assert table["batch"].to_dict() == {"fixed_8": 8.0, "fixed_32": 32.0, "norm_test": 32.0}
    at = table["eval_accuracy_at_budget"].to_dict()
    assert at == pytest.approx({"fixed_8": 0.7, "fixed_32": 0.65, "norm_test": 0.7625})
    steps = table["steps_at_budget"].to_dict()
    assert steps == pytest.approx({"fixed_8": 100.0, "fixed_32": 25.0, "norm_test": 62.5})
    # test accuracy after the last step: seeds 0 and 1 at +0 and +0.02
    assert table["test_accuracy"].to_dict() == pytest.approx(
        {"fixed_8": 0.71, "fixed_32": 0.91, "norm_test": 0.95}
    )
    assert table.loc["fixed_8", "seeds"] == 2 and table.loc["fixed_8", "steps"] == 100


def test_snr_at_the_run_s_batch_is_the_batch_over_the_noise_scale(table):
    """B/B_simple at the last evaluation: 8/16 and 32/16; none without grad_stats."""
    assert table.loc["fixed_8", "snr"] == 0.5 and table.loc["fixed_32", "snr"] == 2.0
    assert math.isnan(table.loc["norm_test", "snr"])


def test_by_rule_puts_each_rule_beside_adam_per_batch():
    """Gaps paired over seeds: at B = 32 signSGD trails by 0.2, 0.1, 0.3 (mean −0.2, sd 0.1,
    t interval ±t(0.975, 2)·0.1/√3 = ±0.2484); at 4096 by 0.01 at every seed (sd 0)."""
    table = pd.DataFrame(
        {
            "batch": [32.0, 32.0, 4096.0, 4096.0],
            "optimizer.name": ["signsgd", "adam", "signsgd", "adam"],
            "test_accuracy": [0.6, 0.8, 0.75, 0.76],
            "test_accuracy_by_seed": [
                {0: 0.6, 1: 0.7, 2: 0.5},
                {0: 0.8, 1: 0.8, 2: 0.8},
                {0: 0.75, 1: 0.75, 2: 0.75},
                {0: 0.76, 1: 0.76, 2: 0.76},
            ],
            "snr": [0.1, 0.1, 12.0, 12.0],
        }
    )
    wide = by_rule(table).set_index("batch")
    assert wide["signsgd − adam"].tolist() == pytest.approx([-0.2, -0.01])
    assert wide.loc[32.0, "signsgd − adam lo"] == pytest.approx(-0.2 - 0.2484, abs=1e-4)
    assert wide.loc[32.0, "signsgd − adam hi"] == pytest.approx(-0.2 + 0.2484, abs=1e-4)
    assert wide["adam acc"].tolist() == [0.8, 0.76] and wide["signsgd snr"].tolist() == [0.1, 12.0]
