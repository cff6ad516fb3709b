"""The scale-invariance figures on a synthetic store: the equilibria they draw are
``equilibrium_angle`` of each run's config, where it applies; grafting's partners are found
from the config; each figure is written where the record has its series, None where not."""

import math
from dataclasses import replace

import pytest

from optlab.analysis.invariance import equilibrium_angle
from optlab.viz.data import load_experiment_record
from optlab.viz.invariance import (
    Grafting,
    equilibria,
    graftings,
    plot_angular_equilibrium,
    plot_grafting,
    plot_norms,
)
from tests.analysis.fake import fake_store

STEPS = range(0, 201, 20)
TENSORS = ("0.weight", "3.weight")  # the hidden Linears that feed BatchNorm
OTHERS = {"1.*": 0.0, "4.*": 0.0, "6.*": 0.0}  # no decay on the gains, biases and the head
SCHEDULE = {"kind": "step", "milestones": [100], "gamma": 0.1}
# names unlike the catalog's: the figures find their conditions from the config
CASES = {
    "no_decay": {},
    "momentum_decay": {"optimizer.weight_decay": 0.04},
    "adamw": {"optimizer.name": "adamw", "optimizer.lr": 1e-2, "optimizer.weight_decay": 0.2},
    "first_only": {"optimizer.weight_decay": 0.04, "optimizer.decay_groups": OTHERS | {"3.*": 0}},
    "projected": {"optimizer.weight_decay": 0.04, "train.project": "unit_norm"},
    "scheduled": {"optimizer.weight_decay": 0.04, "optimizer.lr_schedule": SCHEDULE},
    "small_lr": {"optimizer.lr": 5e-4},
    "small_lr_decay": {"optimizer.lr": 5e-4, "optimizer.weight_decay": 0.1},
    "small_lr_graft": {"optimizer.lr": 5e-4, "train.graft_norms": {"weight_decay": 0.1}},
}
SPEC = {
    "name": "invariance",
    "base": {
        "task": {"name": "digits"},
        "model": {"name": "mlp", "kwargs": {"depth": 2, "width": 8, "normalization": "batchnorm"}},
        "optimizer": {
            "name": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "decay_groups": OTHERS,
        },
        "train": {"steps": 200},
    },
    "cases": CASES,
    "seeds": [0, 1],
}


def _curves(run):
    """‖w‖ relaxing to 2, the angle at 0.03 and accuracy rising to 0.9, a little apart per case."""
    shift = list(CASES).index(run.case) / 100
    norm = lambda k: 2 + 4 * math.exp(-k / 50)  # noqa: E731
    per_tensor = {
        ("params", "l2"): norm,
        ("invariance", "angular_update"): lambda k: 0.03 + shift,
        ("invariance", "grad_cosine"): lambda k: 1e-9,
        ("effective_lr", "effective_lr"): lambda k: 0.05 / norm(k) ** 2,
    }
    out = {"eval": {"accuracy": [(k, 0.9 - 0.8 * math.exp(-k / 30) - shift) for k in STEPS]}}
    for (split, quantity), f in per_tensor.items():
        for t in TENSORS:
            out.setdefault(split, {})[f"{t}/{quantity}"] = [(k, f(k)) for k in STEPS]
    return out


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    store = fake_store(
        tmp_path_factory.mktemp("invariance") / "s.db",
        SPEC,
        lambda run: {"test_accuracy": 0.9},
        curves=_curves,
    )
    rec = load_experiment_record(store, "invariance")
    store.close()
    return rec


def test_equilibria_are_equilibrium_angle_of_each_config(record):
    drawn = {(e.condition, e.tensor): (e.formula, e.angle) for e in equilibria(record)}
    sgdm = equilibrium_angle("sgdm", 0.05, 0.04, 0.9)
    assert math.isclose(sgdm, math.sqrt(2 * 0.05 * 0.04 / 1.9))  # 0.0459 rad
    adamw = equilibrium_angle("adamw", 1e-2, 0.2, 0.9)
    assert math.isclose(adamw, math.sqrt(2 * 1e-2 * 0.2 * 0.1 / 1.9))  # 0.0145 rad
    small = equilibrium_angle("sgdm", 5e-4, 0.1, 0.9)
    # none without decay, none where the norm is projected or grafted or η is scheduled, and
    # first_only's 3.weight none: its decay group gives it λ = 0
    assert drawn == {
        ("momentum_decay", "0.weight"): ("sgdm", sgdm),
        ("momentum_decay", "3.weight"): ("sgdm", sgdm),
        ("adamw", "0.weight"): ("adamw", adamw),
        ("adamw", "3.weight"): ("adamw", adamw),
        ("first_only", "0.weight"): ("sgdm", sgdm),
        ("small_lr_decay", "0.weight"): ("sgdm", small),
        ("small_lr_decay", "3.weight"): ("sgdm", small),
    }


def test_grafting_partners_come_from_the_config(record):
    expected = Grafting("small_lr_graft", "small_lr", "small_lr_decay", {"weight_decay": 0.1})
    assert graftings(record) == [expected]
    alone = replace(record, shown=["small_lr_graft", "no_decay"])
    assert graftings(alone) == [Grafting("small_lr_graft", None, None, {"weight_decay": 0.1})]


@pytest.mark.parametrize("plot", [plot_norms, plot_angular_equilibrium, plot_grafting])
def test_each_figure_is_written_from_the_record(record, plot, tmp_path):
    path = plot(record, tmp_path / "f.png")
    assert path == tmp_path / "f.png" and path.stat().st_size > 10_000


def test_no_figure_without_its_series(record, tmp_path):
    m = record.metrics
    uninvariant = replace(record, metrics=m[m["split"] != "invariance"])
    assert plot_norms(uninvariant, tmp_path / "n.png") is None  # ‖w‖ of no tensor it knows
    assert plot_angular_equilibrium(uninvariant, tmp_path / "a.png") is None
    no_decay = replace(record, shown=["no_decay", "small_lr", "small_lr_graft"])
    assert plot_angular_equilibrium(no_decay, tmp_path / "a.png") is None
    assert (
        plot_grafting(replace(record, metrics=m[m["split"] != "eval"]), tmp_path / "g.png") is None
    )
    ungrafted = replace(record, shown=["no_decay", "small_lr", "small_lr_decay"])
    assert plot_grafting(ungrafted, tmp_path / "g.png") is None
    assert not list(tmp_path.iterdir())
