"""Unit-norm projection and norm grafting of scale-invariant weights (optlab.engine.norms)."""

import copy

import pytest

from optlab.config import RunSpec
from optlab.engine.train import check_buildable, train_group
from optlab.store import Store

SCALE_INVARIANT = ("0.weight", "3.weight")
BASE = {
    "task": {"name": "digits"},
    "model": {"name": "mlp", "kwargs": {"depth": 2, "width": 16, "normalization": "batchnorm"}},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
    "train": {"steps": 40, "batch_size": 32, "eval_every": 10, "dtype": "float64", "seed": 3},
    "probes": {"record": ["params"]},
}


def _spec(optimizer=None, **train) -> RunSpec:
    tree = copy.deepcopy(BASE)
    tree["optimizer"].update(optimizer or {})
    tree["train"].update(train)
    return RunSpec.model_validate(tree)


def _norms(store: Store, run_id: str, name: str) -> list[float]:
    m = store.metrics([run_id], split="params")
    return m[m["name"] == f"{name}/l2"].sort_values("step")["value"].tolist()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_projected_weights_stay_on_the_unit_sphere_and_the_rest_trains(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    spec = _spec(project="unit_norm")
    train_group([spec], store)
    for name in SCALE_INVARIANT:
        assert _norms(store, spec.run_id, name) == pytest.approx([1.0] * 5, abs=1e-12)
    head = _norms(store, spec.run_id, "6.weight")
    assert abs(head[-1] - head[0]) > 1e-3  # not a scale-invariant weight: not projected


def test_a_grafted_run_takes_its_partners_norms_and_only_its_own_rows_are_stored(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    decayed = _spec({"weight_decay": 0.05})
    grafted = _spec(graft_norms={"weight_decay": 0.05})
    plain = _spec()
    train_group([decayed], store)
    (outcome,) = train_group([grafted, plain], store)[:1]
    assert outcome.run_id == grafted.run_id
    for name in SCALE_INVARIANT:
        want = _norms(store, decayed.run_id, name)
        assert _norms(store, grafted.run_id, name) == pytest.approx(want, rel=1e-12)
        assert _norms(store, plain.run_id, name)[-1] > 1.05 * want[-1]  # decay did shrink them
    assert set(store.metrics()["run_id"]) == {decayed.run_id, grafted.run_id, plain.run_id}


def test_settings_for_scale_invariant_weights_need_a_model_that_has_them():
    spec = RunSpec.model_validate(
        {
            **BASE,
            "model": {"name": "mlp", "kwargs": {"width": 8}},
            "train": {"project": "unit_norm"},
        }
    )
    with pytest.raises(ValueError, match="train.project.*has none"):
        check_buildable([spec])


def test_a_graft_partner_must_be_a_valid_optimizer():
    with pytest.raises(ValueError, match="train.graft_norms: the partner's optimizer.weight_decay"):
        _spec(graft_norms={"weight_decay": -1.0})
