"""A fast path equal to ``rules.adamw``: one fused in-place kernel per tensor.

When the decay is ``l2`` or ``none`` (and ε is not tied to η), the AdamW step of Yu 2022 Algorithm 1,

    θ ← θ − ηλθ;  m_t = β1 m + (1−β1) g;  v_t = β2 v + (1−β2) g²;
    θ_t = θ − η m̂_t/(√v̂_t + ε),  m̂ = m_t/(1−β1^t),  v̂ = v_t/(1−β2^t),

is what ``torch._fused_adamw_`` computes, in one pass over each tensor and its state
instead of the pure rule's dozen allocating passes: over the whole stack when its runs
share their numbers (a sweep over seeds, or R = 1), else run by run. The kernel is
elementwise, so a run's result is bitwise the same in a stack as alone. ``rules.adamw`` stays the definition;
tests/optim/test_fused.py holds the two equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.optim.rules import State

FUSED_KEYS = ("lr", "beta1", "beta2", "eps", "weight_decay")


def run_numbers(hyper: dict, runs: int) -> list[dict[str, float]] | None:
    """Each run's η, β1, β2, ε, λ as floats if the AdamW hyperparameters ``hyper`` fit the
    fused path (decay l2 or none, no ε schedule tied to η); else None."""
    if hyper.get("decay", "l2") not in ("l2", "none") or "eps_lr_ratio" in hyper:
        return None
    columns = {}
    for key in FUSED_KEYS:
        value = hyper[key]
        values = value.tolist() if isinstance(value, Tensor) else [value] * runs
        columns[key] = [float(v) for v in values]
    if hyper.get("decay") == "none":
        columns["weight_decay"] = [0.0] * runs
    return [{k: v[r] for k, v in columns.items()} for r in range(runs)]


def fused_adamw_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[State],
    step: Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Step t (a 0-d tensor on the parameters' device) of AdamW, in place on ``params`` and
    their states (``exp_avg``, ``exp_avg_sq``)."""
    torch._fused_adamw_(
        list(params),
        [g.contiguous() for g in grads],  # the kernel walks raw memory: strides must match
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        [step] * len(params),  # read, not advanced, by the kernel
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        weight_decay=weight_decay,
        eps=eps,
        amsgrad=False,
        maximize=False,
    )
