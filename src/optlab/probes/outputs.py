"""Probes of the model's outputs on the eval set: confidence, the top-2 gap, the majority
and minority class logits (the scalars the paper logged), and every eval point's prediction."""

from __future__ import annotations

import torch
from torch import Tensor

from optlab.probes.base import Observation

OUTPUTS = ("confidence", "top2_gap", "majority_logit", "minority_logit")


def output_sums(logits: Tensor, majority: int, minority: int) -> Tensor:
    """Sums over a chunk of points (R, B, C) of, in ``OUTPUTS`` order: max_c p_c, p_(1) − p_(2)
    (the top-2 softmax gap), the majority class's logit and the minority class's logit: (R, 4)."""
    p = torch.softmax(logits, dim=-1)
    top = p.topk(min(2, p.shape[-1]), dim=-1).values
    gap = top[..., 0] - top[..., 1] if top.shape[-1] > 1 else top[..., 0]
    return torch.stack(
        [top[..., 0], gap, logits[..., majority], logits[..., minority]], dim=-1
    ).sum(1)


def outputs(obs: Observation) -> dict[str, Tensor]:
    """Means over the eval points of ``OUTPUTS`` (computed in the eval pass itself)."""
    return obs.evaluation.outputs


def predictions(obs: Observation) -> dict[str, Tensor]:
    """The predicted class of every eval point (R, N), in the eval labels' integer type (uint8
    up to 256 classes), for decision-map animations; at step 0 also the eval points, their
    labels and the task's centers, so that pictures need nothing but the store."""
    labels = obs.task.get("eval_labels")
    dtype = torch.uint8 if labels is None else labels.dtype
    out = {"predictions": obs.evaluation.predictions.to(dtype)}
    if obs.step == 0:
        runs = out["predictions"].shape[0]
        out.update({f"task/{k}": v.expand(runs, *v.shape) for k, v in obs.task.items()})
    return out
