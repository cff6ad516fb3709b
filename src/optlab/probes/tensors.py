"""Probes of the parameters themselves: statistics, scalars, distance from θ_0, and snapshots
of small tensors. Each value is per run and per tensor."""

from __future__ import annotations

import torch
from torch import Tensor

from optlab.probes.base import Observation
from optlab.stacking import flat_runs

SCALAR_MAX = 4  # tensors with at most this many entries per run are logged entry by entry
SNAPSHOT_MAX = 8192  # tensors with at most this many entries per run are snapshotted whole


def tensor_stats(t: Tensor) -> dict[str, Tensor]:
    """min, mean, max, RMS = √(Σθ²/n), L2 = √(Σθ²), L∞ = max|θ| of each run's slice: (R,) each."""
    flat = flat_runs(t)
    lo, hi = flat.amin(1), flat.amax(1)
    sq = flat.pow(2).sum(1)
    return {
        "min": lo,
        "mean": flat.mean(1),
        "max": hi,
        "rms": (sq / flat.shape[1]).sqrt(),
        "l2": sq.sqrt(),
        "linf": torch.maximum(hi, -lo),
    }


def params(obs: Observation) -> dict[str, Tensor]:
    """``<tensor>/<stat>`` for every parameter tensor (the paper's weight bands)."""
    return {
        f"{name}/{stat}": value
        for name, t in obs.params.items()
        for stat, value in tensor_stats(t).items()
    }


def scalars(obs: Observation) -> dict[str, Tensor]:
    """The model's small named quantities (offset, scale, the plus-minus pair, final.norm):
    ``<tensor>`` for a scalar, ``<tensor>/<i>`` for entry i of a tensor of ≤ 4 entries, and
    the scalars a model defines of its parameters (the essay toy's memorizers and generalizer)."""
    out = dict(obs.model_scalars)
    for name, t in obs.params.items():
        flat = flat_runs(t)
        if t.dim() == 1:
            out[name] = flat[:, 0]
        elif flat.shape[1] <= SCALAR_MAX:
            out.update({f"{name}/{i}": flat[:, i] for i in range(flat.shape[1])})
    return out


def distance(obs: Observation) -> dict[str, Tensor]:
    """‖θ_t − θ_0‖ and cos(θ_t, θ_0) = θ_t·θ_0/(‖θ_t‖‖θ_0‖) per tensor (cosine 0 where a norm is 0)."""
    out = {}
    for name, t in obs.params.items():
        now, start = flat_runs(t), flat_runs(obs.init[name])
        norms = now.norm(dim=1) * start.norm(dim=1)
        dot = (now * start).sum(1)
        out[f"{name}/distance"] = (now - start).norm(dim=1)
        out[f"{name}/cosine"] = torch.where(norms > 0, dot / norms, torch.zeros_like(dot))
    return out


def snapshots(obs: Observation) -> dict[str, Tensor]:
    """Whole copies of every tensor with at most 8192 entries per run (e.g. learned centers)."""
    return {
        f"snapshot/{name}": t.detach()
        for name, t in obs.params.items()
        if flat_runs(t).shape[1] <= SNAPSHOT_MAX
    }
