"""Tuning: each cell keeps the learning rate with the lowest mean final eval loss."""

import math

import pytest

from optlab.analysis.cells import cells
from tests.analysis.fake import fake_store

SPEC = {
    "name": "tuned",
    "cases": {"x": {}, "y": {"model.nonlinearity": "gelu"}},
    "tune": {"optimizer.lr": [1e-3, 1e-2]},
    "seeds": [1, 2, 3],
}


def finals(run):
    s = run.spec
    lr, seed, case = s.optimizer.lr, s.train.seed, run.case
    # x: lr 1e-3 has the lower eval loss, though 1e-2 has the higher test accuracy.
    # y: lr 1e-3 is better on two seeds but diverges on the third, so 1e-2 is kept.
    if case == "x":
        loss = 0.5 if lr == 1e-3 else 0.6
    else:
        loss = (math.nan if seed == 3 else 0.1) if lr == 1e-3 else 0.4
    accuracy = 0.8 + 0.01 * seed + (0.1 if lr == 1e-2 else 0.0)
    return {"eval_loss": loss, "test_accuracy": accuracy, "test_loss": loss + seed}


def test_each_cell_keeps_its_best_lr_by_mean_eval_loss(tmp_path):
    table = cells(fake_store(tmp_path / "s.db", SPEC, finals), "tuned").set_index("case")
    assert table.loc["x", "optimizer.lr"] == 1e-3 and table.loc["y", "optimizer.lr"] == 1e-2
    assert table.loc["x", "test_accuracy"] == pytest.approx(0.82)  # mean over seeds 1..3
    assert table.loc["y", "test_accuracy"] == pytest.approx(0.92)
    assert table.loc["x", "test_loss"] == pytest.approx(2.5)
    assert (table["seeds"] == 3).all() and (table["diverged"] == 0).all()
    assert table.loc["x", "test_accuracy_lo"] <= 0.82 <= table.loc["x", "test_accuracy_hi"]


def test_without_tune_axes_every_run_counts(tmp_path):
    spec = {**SPEC, "tune": {}, "grid": {"optimizer.lr": [1e-3, 1e-2]}}
    table = cells(fake_store(tmp_path / "s.db", spec, finals), "tuned")
    assert len(table) == 4 and set(table["seeds"]) == {3}  # a cell per case × grid value


def test_cells_compare_to_the_baseline_paired_by_seed_with_holm(tmp_path):
    from optlab.analysis.stats import welch

    spec = {**SPEC, "cases": {**SPEC["cases"], "z": {"model.nonlinearity": "swish"}}}
    table = cells(fake_store(tmp_path / "s.db", {**spec, "baseline": "x"}, finals), "tuned")
    table = table.set_index("case")
    # y keeps lr 1e-2: 0.91, 0.92, 0.93 against x's 0.81, 0.82, 0.83 (lr 1e-3). The seed's
    # +0.01 is common to both, so paired by seed every difference is 0.10: the interval
    # shrinks to a point and p to nothing, where Welch's test of the same numbers gives 0.0013.
    assert table.loc["y", "method"] == "paired"
    assert table.loc["y", "delta"] == pytest.approx(0.10)
    assert table.loc["y", "delta_lo"] == pytest.approx(0.10) == table.loc["y", "delta_hi"]
    assert table.loc["y", "p"] < 1e-12 < welch([0.91, 0.92, 0.93], [0.81, 0.82, 0.83])[2]
    assert table.loc["y", "p_holm"] == pytest.approx(min(1.0, 2 * table.loc["y", "p"]))
    assert math.isnan(table.loc["x", "delta"]) and set(table["comparisons"]) == {2}
    # the cell's own interval: 0.92 ± t_{0.975,2}·0.01/√3 = ± 4.302653·0.005774 = ± 0.024841
    assert table.loc["y", "test_accuracy_lo"] == pytest.approx(0.92 - 0.024841, abs=1e-6)


def test_no_comparison_from_two_seeds(tmp_path):
    spec = {**SPEC, "seeds": [1, 2], "baseline": "x"}
    table = cells(fake_store(tmp_path / "s.db", spec, finals), "tuned").set_index("case")
    assert math.isnan(table.loc["y", "delta"]) and set(table["comparisons"]) == {0}


def test_baseline_must_be_a_case():
    from optlab.config import SpecError, load_experiment

    with pytest.raises(SpecError, match="baseline: 'w' is not a case; valid: x, y"):
        load_experiment({**SPEC, "baseline": "w"})
