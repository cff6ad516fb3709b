"""The kl_adam trend rule: a fitted change by hand, and each verdict on a synthetic store."""

import math

import numpy as np
import pytest

from optlab.analysis.gradient_noise import STAYS_WITHIN, second_half_change, trends
from tests.analysis.fake import fake_store

STEPS = list(range(0, 101, 10))


def test_second_half_change_reads_the_fitted_log_ratio():
    # KL = 5·e^(−0.02·t): over the second half (t = 50 … 100) ln KL falls by 0.02·50 = 1
    steps = np.array(STEPS, float)
    assert second_half_change(steps, 5 * np.exp(-0.02 * steps)) == pytest.approx(-1.0)
    # the first half does not count: a jump before t = 50, flat after
    flat = np.where(steps < 50, 1e6, 3.0)
    assert second_half_change(steps, flat) == pytest.approx(0.0, abs=1e-12)
    # fewer than three finite positive records in the second half: no change
    assert math.isnan(second_half_change(steps, np.where(steps < 70, 1.0, np.nan)))


SPEC = {
    "name": "gn",
    "base": {"model": {"name": "final"}, "probes": {"record": ["grad_stats"]}},
    "cases": {"falls": {}, "grows": {"optimizer.lr": 2e-3}, "stays": {"optimizer.lr": 3e-3}},
    "grid": {"train.batch_size": [32, 256]},
    "seeds": [0, 1, 2],
}
# ln change per seed over the second half, by case: each seed a little apart
CHANGES = {"falls": -2.0, "grows": 1.5, "stays": 0.0}


def _curves(run):
    seed, case = run.spec.train.seed, run.case
    change = CHANGES[case] + 0.1 * (seed - 1) * (1 if run.spec.train.batch_size == 32 else 20)
    slope = change / 50
    kl = [(t, 10.0 * math.exp(slope * t)) for t in STEPS[1:]]
    tracks = [(t, 2.0 if t < 50 else 4.0) for t in STEPS[1:]]
    return {"grad_stats": {"kl_adam": kl, "v_hat_tracks": tracks}}


def test_each_cell_gets_its_verdict(tmp_path):
    store = fake_store(tmp_path / "s.db", SPEC, lambda run: {}, curves=_curves)
    table = trends(store, "gn").set_index(["case", "train.batch_size"])
    assert len(table) == 6 and (table["seeds"] == 3).all()
    # batch 32: seeds at change ± 0.1, so the interval is mean ± t_{0.975,2}·0.1/√3 = ± 0.248
    for case, change in CHANGES.items():
        row = table.loc[(case, 32)]
        assert row["change"] == pytest.approx(change)
        assert row["change_hi"] - row["change"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
        assert row["verdict"] == case
        assert row["v_hat_tracks_first_half"] == 2.0 and row["v_hat_tracks_second_half"] == 4.0
    # stays at batch 32: every seed's KL within e^±0.1 of 10 over the second half (median at
    # t = 70 or 80: 10·e^(slope·75) on average over the seeds' ±0.1 changes)
    assert table.loc[("stays", 32), "second_half_median"] == pytest.approx(10.0, rel=0.02)
    # batch 256: the seeds 2 apart, the interval far wider than ±ln 1.5 around a mean of 0
    assert table.loc[("stays", 256), "verdict"] == "inconclusive"
    assert table.loc[("stays", 256), "change_hi"] > STAYS_WITHIN
    assert table.loc[("falls", 256), "verdict"] == "inconclusive"


def test_nothing_without_the_probe(tmp_path):
    spec = {**SPEC, "base": {"model": {"name": "final"}}}
    store = fake_store(tmp_path / "s.db", spec, lambda run: {"test_accuracy": 0.5})
    assert trends(store, "gn").empty
