"""Decoupled weight-decay rules for AdamW, applied to θ_{t−1} before the moment update.

Each maps (θ, η, λ) to the decayed θ, over a stack with a leading run axis; η and λ
may be numbers or (R,) tensors. The paper's Algorithm 1 and ``torch.optim.AdamW``
use ``l2``; seed 002 §3.3.7 ablates ``l1`` and ``min``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from optlab.stacking import per_run, run_axes


def l2(theta: Tensor, lr, weight_decay) -> Tensor:
    """θ ← θ − ηλθ (Loshchilov & Hutter 2017): decay proportional to the weight."""
    return theta - per_run(lr * weight_decay, theta.dim()) * theta


def l1(theta: Tensor, lr, weight_decay) -> Tensor:
    """θ ← θ − ηλ·sign θ: a constant pull toward zero, as the paper's AdamW-L1 ran it."""
    return theta - per_run(lr * weight_decay, theta.dim()) * theta.sign()


def min_abs(theta: Tensor, lr, weight_decay) -> Tensor:
    """θ ← θ − η·min|θ|·sign θ, the minimum over each run's tensor; λ is not applied,
    exactly as the original study's AdamWMin ran it."""
    smallest = (
        theta.abs().amin(dim=run_axes(theta), keepdim=True) if theta.dim() > 1 else theta.abs()
    )
    return theta - per_run(lr, theta.dim()) * smallest * theta.sign()


def no_decay(theta: Tensor, lr, weight_decay) -> Tensor:
    """θ unchanged."""
    return theta


DECAYS: dict[str, Callable[..., Tensor]] = {"l2": l2, "l1": l1, "min": min_abs, "none": no_decay}
