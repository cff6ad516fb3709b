"""Probes through the engine on tiny models: what reaches the store, against values by hand."""

import math

import numpy as np
import pytest
import torch

from optlab.config import expand, load_experiment
from optlab.engine import run_planned
from optlab.engine.train import task_for
from optlab.models import build_model
from optlab.store import Store

SMALL = {"train.steps": 30, "train.eval_every": 10, "task.n_eval": 200, "task.n_test": 50}


def _run(tmp_path, model, **overrides):
    spec = load_experiment({"name": "p", "base": {"model": {"name": model}}})
    (run,) = expand(spec, {**SMALL, **overrides})
    store = Store(tmp_path / "p.db")
    run_planned([run], store)
    return store, run


def test_exact_outputs_by_hand(tmp_path):
    # exact: logits one-hot (1, 0) and always right. Per point p_max = e/(1+e) and the top-2
    # gap (e−1)/(e+1); the majority class's logit is 1 on exactly its own points, so its
    # mean is that class's share of the eval set, and the minority's likewise.
    store, run = _run(tmp_path, "exact")
    labels = task_for(run.spec).labels["eval"]
    shares = np.bincount(labels, minlength=2) / len(labels)
    m = store.metrics([run.run_id])
    out = m[(m["split"] == "outputs") & (m["step"] == 30)].set_index("name")["value"]
    e = math.e
    assert out["confidence"] == pytest.approx(e / (1 + e), rel=1e-6)
    assert out["top2_gap"] == pytest.approx((e - 1) / (e + 1), rel=1e-6)
    assert out["majority_logit"] == pytest.approx(shares.max(), rel=1e-6)
    assert out["minority_logit"] == pytest.approx(shares.min(), rel=1e-6)
    assert not (m["split"] == "params").any()  # exact has no parameters


def test_step_zero_params_are_the_initialisation(tmp_path):
    # center_labels: W is drawn by model.init from the training seed; step 0 records its stats
    store, run = _run(tmp_path, "center_labels", **{"probes.record": ["params", "snapshots"]})
    env = task_for(run.spec)
    w = build_model(run.spec.model, env).init(torch.Generator().manual_seed(run.spec.train.seed))
    w = w["W"].numpy().ravel()
    m = store.metrics([run.run_id])
    first = m[(m["split"] == "params") & (m["step"] == 0)].set_index("name")["value"]
    expect = {
        "W/min": w.min(),
        "W/mean": w.mean(),
        "W/max": w.max(),
        "W/rms": np.sqrt((w**2).mean()),
        "W/l2": np.linalg.norm(w),
        "W/linf": np.abs(w).max(),
    }
    assert first.to_dict() == pytest.approx(expect, rel=1e-5)
    assert sorted(m.loc[m["split"] == "params", "step"].unique()) == [0, 10, 20, 30]
    np.testing.assert_allclose(store.array(run.run_id, "snapshot/W")[0].ravel(), w)


def test_array_probes_follow_their_own_cadence(tmp_path):
    # eval every 10 of 30 steps, arrays every 2nd eval step: 0, 20 and the end (30)
    store, run = _run(
        tmp_path, "learn_offset", **{"probes.record": ["predictions"], "probes.array_every": 2}
    )
    assert sorted(store.array(run.run_id, "predictions")) == [0, 20, 30]
    assert sorted(store.array(run.run_id, "task/eval_points")) == [0]
    predictions = store.array(run.run_id, "predictions")[30]
    labels = store.array(run.run_id, "task/eval_labels")[0]
    m = store.metrics([run.run_id])
    accuracy = m[(m["split"] == "eval") & (m["name"] == "accuracy") & (m["step"] == 30)]
    assert (predictions == labels).mean() == pytest.approx(accuracy["value"].item())
