"""Each run's loss over a stack: the function a training step differentiates."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def run_losses(
    outputs: Tensor,
    y: Tensor,
    runs: int,
    loss: str = "cross_entropy",
    mask: Tensor | None = None,
) -> Tensor:
    """Each run's mean loss (R,): outputs (R or 1, B, ..., C) and targets y (R or 1, B, ...):
    cross-entropy over the last axis of class indices (every position of a sequence is one
    target), or ½·(f − y)² for a regression's outputs (R, B). ``mask`` (R, B) of 0 and 1 marks
    each run's own examples, a prefix of a batch padded to the stack's largest (a batch
    controller's runs): the run's mean is Σ_b m_b ℓ_b / Σ_b m_b, over its own B alone."""
    outputs = outputs.expand(runs, *outputs.shape[1:])
    y = y.expand(runs, *y.shape[1:])
    if loss == "half_mse":
        per_target = 0.5 * (outputs - y).pow(2)
    else:
        classes = outputs.shape[-1]
        per_target = F.cross_entropy(
            outputs.reshape(-1, classes), y.reshape(-1), reduction="none"
        ).view(y.shape)
    if mask is None:
        return per_target.reshape(runs, -1).mean(1)
    per_example = per_target.reshape(runs, mask.shape[1], -1).mean(-1)
    return (per_example * mask).sum(1) / mask.sum(1)
