"""Each run's loss over a stack: the function a training step differentiates."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def run_losses(outputs: Tensor, y: Tensor, runs: int, loss: str = "cross_entropy") -> Tensor:
    """Each run's mean loss (R,): outputs (R or 1, B, ..., C) and targets y (R or 1, B, ...):
    cross-entropy over the last axis of class indices (every position of a sequence is one
    target), or ½·(f − y)² for a regression's outputs (R, B)."""
    outputs = outputs.expand(runs, *outputs.shape[1:])
    y = y.expand(runs, *y.shape[1:])
    if loss == "half_mse":
        return 0.5 * (outputs - y).pow(2).reshape(runs, -1).mean(1)
    ce = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1), reduction="none")
    return ce.view(runs, -1).mean(1)
