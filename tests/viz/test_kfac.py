"""The K-FAC figures on a synthetic store: what they draw is each condition's mean over seeds
and the range between its lowest and highest seed; each figure is written where the record has
its series, None where not."""

from dataclasses import replace

import numpy as np
import pytest

from optlab.viz.data import load_experiment_record
from optlab.viz.kfac import (
    kfac_layers,
    plot_damping_ratio,
    plot_factor_traces,
    plot_jacobian_fit,
)
from tests.analysis.fake import fake_store

STEPS = range(0, 201, 25)
LAYERS = ("0.weight", "2.weight")
KFAC = {"optimizer.name": "kfac", "optimizer.lr": 0.1, "optimizer.damping": 1.0}
SPEC = {
    "name": "kfac",
    "base": {
        "task": {"name": "digits"},
        "model": {"name": "mlp", "kwargs": {"depth": 1, "width": 8}},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "train": {"steps": 200},
    },
    "cases": {
        "fisher": KFAC | {"optimizer.curvature": "fisher"},
        "gauss_newton": KFAC | {"optimizer.curvature": "gauss_newton"},
        "sgd": {},
    },
    "seeds": [0, 1],
}


def _ratio(k: int) -> float:
    """A damping ratio rising tenfold, from 0.3 to 3, over training."""
    return 0.3 * 10 ** (k / 200)


def _curves(run):
    """Seed s scales each series by 1 + s; Gauss-Newton's damping ratio a hundredth of the
    Fisher's; K-FAC's series for the K-FAC cases only, the Jacobian's for every case."""
    scale = 1 + run.spec.train.seed
    out = {
        "jacobian": {
            "ratio_whitened": [(k, scale * 1.0) for k in STEPS],
            "ratio": [(k, scale * 0.4) for k in STEPS],
        }
    }
    if run.case != "sgd":
        damping = 1.0 if run.case == "fisher" else 0.01
        out["kfac"] = {
            f"{t}/{name}": [(k, scale * f(k)) for k in STEPS]
            for t in LAYERS
            for name, f in {
                "damping_ratio": lambda k: damping * _ratio(k),
                "A_trace": lambda k: 16.0,
                "G_trace": lambda k: 1 / _ratio(k),
            }.items()
        }
        out["kfac"]["4.weight/A_trace"] = [(0, 1.0)]  # a layer without a damping ratio
    return out


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    store = fake_store(
        tmp_path_factory.mktemp("kfac") / "s.db",
        SPEC,
        lambda run: {"test_accuracy": 0.9},
        curves=_curves,
    )
    rec = load_experiment_record(store, "kfac")
    store.close()
    return rec


def test_damping_ratio_is_mean_and_range_over_seeds(record):
    assert kfac_layers(record) == list(LAYERS)  # 4.weight records no damping ratio
    drawn = record.bands("kfac", "0.weight/damping_ratio")
    assert [s.condition for s in drawn] == ["fisher", "gauss_newton"]  # sgd has no K-FAC
    ratio = np.array([_ratio(k) for k in STEPS])
    for s, damping in zip(drawn, (1.0, 0.01), strict=True):
        np.testing.assert_array_equal(s.steps, list(STEPS))
        # seeds 0 and 1 scale by 1 and 2: mean 1.5×, range 1× to 2×
        np.testing.assert_allclose(s.mean, 1.5 * damping * ratio)
        np.testing.assert_allclose(s.lo, damping * ratio)
        np.testing.assert_allclose(s.hi, 2 * damping * ratio)
        assert s.seeds == 2
    assert drawn[0].mean[-1] == pytest.approx(4.5)  # Fisher ends above 1: 1.5 × 3


def test_jacobian_ratio_is_drawn_for_every_condition(record):
    drawn = record.bands("jacobian", "ratio_whitened")
    assert [s.condition for s in drawn] == ["fisher", "gauss_newton", "sgd"]
    for s in drawn:
        assert np.allclose(s.mean, 1.5) and np.allclose(s.lo, 1) and np.allclose(s.hi, 2)


@pytest.mark.parametrize("plot", [plot_damping_ratio, plot_factor_traces, plot_jacobian_fit])
def test_each_figure_is_written_from_the_record(record, plot, tmp_path):
    path = plot(record, tmp_path / "f.png")
    assert path == tmp_path / "f.png" and path.stat().st_size > 10_000


def test_no_figure_without_its_series(record, tmp_path):
    m = record.metrics
    no_kfac = replace(record, metrics=m[m["split"] != "kfac"])
    assert plot_damping_ratio(no_kfac, tmp_path / "d.png") is None
    assert plot_factor_traces(no_kfac, tmp_path / "t.png") is None
    assert no_kfac.bands("kfac", "0.weight/damping_ratio") == []
    raw_only = replace(record, metrics=m[m["name"] != "ratio_whitened"])
    assert plot_jacobian_fit(raw_only, tmp_path / "j.png") is None  # ratio alone is not enough
    sgd_only = replace(record, shown=["sgd"])
    assert plot_damping_ratio(sgd_only, tmp_path / "d.png") is None
    assert not list(tmp_path.iterdir())
