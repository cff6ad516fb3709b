"""Decoupled weight-decay rules, applied to θ_{t−1} before the step.

The stateless ones map (θ, η, λ) to the decayed θ, over a stack with a leading run
axis; η and λ may be numbers or (R,) tensors. The paper's Algorithm 1 and
``torch.optim.AdamW`` use ``l2``; Yu 2022 §3.3.7 ablates ``l1`` and ``min``. The
stateful variants below are the paper's next steps (the AdamWAnalysis README). ``decoupled`` applies
any of them; every rule with decoupled decay calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from optlab.stacking import per_run, run_axes

State = dict[str, Tensor]


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


# ---- stateful variants (the AdamWAnalysis README, "Next steps") ---------------------------------------------
# Each maps (θ, g, state, η, λ, options) to (decayed θ, its own state entries). Their state is
# created on first use, so a rule's ``init`` does not depend on the decay chosen.


def grad_scaled(
    theta: Tensor, grad: Tensor, state: State, lr, weight_decay, *, decay_beta, decay_strength, **_
) -> tuple[Tensor, State]:
    """Gradient-dependent L2 (the AdamWAnalysis README, next steps): small gradients signal crystallisation (strong decay), large ones
    learning (weak decay). With ḡ_t = β ḡ_{t−1} + (1−β)|g_t| and r = ḡ_t / mean(ḡ_t) over each
    run's tensor,

    λ_t = λ·(1 + γ)/(1 + γ·r),   θ ← θ − η λ_t θ

    so λ_t = λ where the gradient is of the tensor's average size, (1 + γ)λ where it vanishes,
    and → 0 where it dominates; γ = 0 is plain l2. β is ``decay_beta``, γ ``decay_strength``.
    """
    n = theta.dim()
    beta = per_run(decay_beta, n)
    prev = state["grad_abs_avg"] if "grad_abs_avg" in state else torch.zeros_like(grad)
    avg = beta * prev + (1 - beta) * grad.abs()
    mean = avg.mean(dim=run_axes(avg), keepdim=True) if n > 1 else avg
    r = avg / mean.clamp_min(torch.finfo(avg.dtype).tiny)
    gamma = per_run(decay_strength, n)
    lam = per_run(weight_decay, n) * (1 + gamma) / (1 + gamma * r)
    return theta - per_run(lr, n) * lam * theta, {"grad_abs_avg": avg}


def dropout(
    theta: Tensor,
    grad: Tensor,
    state: State,
    lr,
    weight_decay,
    *,
    decay_p,
    generators: Sequence[torch.Generator] | None = None,
    **_,
) -> tuple[Tensor, State]:
    """L2 decay dropout (the AdamWAnalysis README, next steps) on a random fraction p = ``decay_p`` of the
    coordinates each step:

    θ ← θ − ηλ·ξ⊙θ,  ξ_i ~ Bernoulli(p) drawn afresh each step from each run's generator

    (no 1/p rescaling: the expected decay is pηλθ). p = 1 is l2, p = 0 is none.
    """
    if generators is None:
        raise ValueError("decay 'dropout' needs one torch.Generator per run (generators=...)")
    n = theta.dim()
    draws = [torch.rand(theta.shape[1:], generator=g, dtype=theta.dtype) for g in generators]
    draws = torch.stack(draws).to(theta.device, non_blocking=True)  # no wait on a GPU stream
    keep = (draws < per_run(decay_p, n)).to(theta.dtype)
    return theta - per_run(lr * weight_decay, n) * keep * theta, {}


def sign_ema(
    theta: Tensor, grad: Tensor, state: State, lr, weight_decay, *, decay_beta, **_
) -> tuple[Tensor, State]:
    """L1 decay gated by an EMA of the parameter's sign (the AdamWAnalysis README, next steps; β = ``decay_beta``):

    s̄_t = β s̄_{t−1} + (1−β) sign θ_{t−1}  (s̄_0 = sign θ_0),   θ ← θ − ηλ·s̄_t

    A weight that keeps its sign is pulled toward zero at the full L1 rate; one that flips
    around zero has s̄ ≈ 0 and is left alone, which removes L1's chatter at zero.
    """
    n = theta.dim()
    beta = per_run(decay_beta, n)
    sign = theta.sign()
    avg = beta * state.get("sign_avg", sign) + (1 - beta) * sign
    return theta - per_run(lr * weight_decay, n) * avg, {"sign_avg": avg}


STATEFUL_DECAYS: dict[str, Callable[..., tuple[Tensor, State]]] = {
    "grad_scaled": grad_scaled,
    "dropout": dropout,
    "sign_ema": sign_ema,
}
DECAY_NAMES = (*DECAYS, *STATEFUL_DECAYS)


def decoupled(
    decay: str, theta: Tensor, grad: Tensor, state: State, lr, weight_decay, **options
) -> tuple[Tensor, State]:
    """Apply the decoupled decay named ``decay`` to θ_{t−1}; returns θ and ``state`` updated.

    ``options`` are the stateful variants' settings (decay_beta, decay_strength, decay_p,
    generators); the stateless rules ignore them.
    """
    if decay in DECAYS:
        return DECAYS[decay](theta, lr, weight_decay), state
    theta, entries = STATEFUL_DECAYS[decay](theta, grad, state, lr, weight_decay, **options)
    return theta, {**state, **entries}
