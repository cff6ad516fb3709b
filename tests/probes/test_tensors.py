"""Parameter probes against hand-computed values on two runs of tiny tensors."""

import math

import pytest
import torch

from optlab.probes.base import Evaluation, Observation
from optlab.probes.tensors import distance, params, scalars, snapshots

NO_EVAL = Evaluation(torch.zeros(2), torch.zeros(2), {}, None)


def _obs(**kw) -> Observation:
    return Observation(step=10, evaluation=NO_EVAL, **kw)


def test_params_stats_by_hand():
    # run 0: w = [3, -4] → min -4, mean -0.5, max 3, L2 5, RMS 5/√2, L∞ 4
    # run 1: w = [1, 1]  → min 1, mean 1, max 1, L2 √2, RMS 1, L∞ 1
    w = torch.tensor([[3.0, -4.0], [1.0, 1.0]])
    out = params(_obs(params={"w": w}))
    expect = {
        "w/min": [-4, 1],
        "w/mean": [-0.5, 1],
        "w/max": [3, 1],
        "w/l2": [5, math.sqrt(2)],
        "w/rms": [5 / math.sqrt(2), 1],
        "w/linf": [4, 1],
    }
    assert set(out) == set(expect)
    for name, values in expect.items():
        assert out[name].tolist() == pytest.approx(values), name


def test_scalars_and_snapshots_pick_small_tensors():
    p = {
        "offset": torch.tensor([0.25, 0.5]),  # (R,): a scalar per run
        "pm": torch.tensor([[-0.4, 0.4], [-0.3, 0.5]]),
        "big": torch.zeros(2, 9000),
    }
    out = scalars(_obs(params=p))
    expect = {"offset": [0.25, 0.5], "pm/0": [-0.4, -0.3], "pm/1": [0.4, 0.5]}
    assert set(out) == set(expect)
    for name, values in expect.items():
        assert out[name].tolist() == pytest.approx(values), name
    snaps = snapshots(_obs(params=p))
    assert set(snaps) == {"snapshot/offset", "snapshot/pm"}  # 9000 entries > 8192
    assert torch.equal(snaps["snapshot/pm"], p["pm"])


def test_distance_and_cosine_from_init():
    # θ_0 = (1, 0); θ_t = (1, 1): ‖θ_t − θ_0‖ = 1, cos = 1/√2. Run 1 starts at 0: cosine 0.
    init = {"w": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    now = {"w": torch.tensor([[1.0, 1.0], [3.0, 4.0]])}
    out = distance(_obs(params=now, init=init))
    assert out["w/distance"].tolist() == pytest.approx([1.0, 5.0])
    assert out["w/cosine"].tolist() == pytest.approx([1 / math.sqrt(2), 0.0])
