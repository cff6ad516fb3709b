"""Probes of scale-invariant weights (Grosse (2022), CSC 2541 lecture 5, "Implicit learning
rate decay"): a weight w that feeds a normalizer has a loss with L(c·w) = L(w), so its
gradient is orthogonal to w and scales as 1/‖w‖. A plain SGD step w_{k+1} = w_k − η g_k then
lengthens w by Pythagoras, ‖w_{k+1}‖² = ‖w_k‖² + η²‖g_k‖², and a longer w turns more slowly:
its effective learning rate is η/‖w‖² (η/‖w‖ for rules whose step ignores the gradient's scale).
"""

from __future__ import annotations

import torch
from torch import Tensor

from optlab.probes.base import Observation
from optlab.stacking import flat_runs


def step_lr(hyper: dict) -> Tensor | None:
    """η of the step just taken, from ``Stepper.hyper_for``: the rule's own, a graft's
    magnitude child's (the graft steps as far as it), None where the optimizer has none."""
    return hyper.get("lr", hyper.get("magnitude", {}).get("lr"))


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩/(‖a‖‖b‖) of each run's rows of (R, n) stacks, 0 where a norm is 0."""
    norms = a.norm(dim=1) * b.norm(dim=1)
    dot = (a * b).sum(1)
    return torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), 0.0)


def angle(a: Tensor, b: Tensor) -> Tensor:
    """∠(a, b) in radians of each run's rows of (R, n) stacks, 0 where a norm is 0:
    2·atan2(‖â − b̂‖, ‖â + b̂‖) with â = a/‖a‖, exact to rounding at tiny angles, where
    arccos of a cosine near 1 loses half the digits."""
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    moving = (na > 0) & (nb > 0)
    ua, ub = a / torch.where(moving, na, 1.0), b / torch.where(moving, nb, 1.0)
    theta = 2 * torch.atan2((ua - ub).norm(dim=1), (ua + ub).norm(dim=1))
    return torch.where(moving[:, 0], theta, 0.0)


def invariance(obs: Observation) -> dict[str, Tensor]:
    """For each scale-invariant tensor w and the step just taken, w_k → w_{k+1} with
    gradient g_k and rate η_k, in float64:

    ``grad_cosine`` = cos(w_k, g_k): 0 where the loss is scale-invariant;
    ``norm_law_residual`` = (‖w_{k+1}‖² − ‖w_k‖² − η_k²‖g_k‖²)/‖w_{k+1}‖²: 0 for plain SGD,
    nonzero with momentum, weight decay or a rule that does not step along g;
    ``angular_update`` = ∠(w_k, w_{k+1}) in radians.

    Optimizers without a rate η (named by import path) record no ``norm_law_residual``."""
    u, opt = obs.update, obs.optimizer
    if u is None:
        return {}
    out = {}
    for name in obs.scale_invariant:
        w = flat_runs(u.before[name]).double()
        w_next = flat_runs(obs.params[name]).double()
        g = flat_runs(u.grads[name]).double()
        out[f"{name}/grad_cosine"] = cosine(w, g)
        lr = None if opt is None else step_lr(opt.hyper_for(name))
        if lr is not None:
            lr = torch.as_tensor(lr, dtype=torch.float64, device=w.device)
            # ‖w_{k+1}‖² − ‖w_k‖² as ⟨w_{k+1} − w_k, w_{k+1} + w_k⟩: no cancellation
            growth = ((w_next - w) * (w_next + w)).sum(1)
            residual = growth - lr**2 * g.pow(2).sum(1)
            out[f"{name}/norm_law_residual"] = residual / w_next.pow(2).sum(1)
        out[f"{name}/angular_update"] = angle(w, w_next)
    return out


def effective_lr(obs: Observation) -> dict[str, Tensor]:
    """η/‖w‖^(k+1) for each scale-invariant tensor w, with k the rule's ``step_degree``
    (Δθ(c·g) = c^k·Δθ(g)): the rate at unit norm that turns w's direction as far as η turns
    it at ‖w‖. From c·w the gradient is g/c, so the step is c^(−k) as long and turns w by
    c^(−k−1) as much: η/‖w‖² for SGD (van Laarhoven 2017), η/‖w‖ for Adam's kin, RMSprop and
    sign rules. Nothing is recorded for an optimizer without η or a known degree (named by
    import path)."""
    opt = obs.optimizer
    degree = None if opt is None else opt.step_degree
    if degree is None:
        return {}
    out = {}
    for name in obs.scale_invariant:
        lr = step_lr(opt.hyper_for(name))
        if lr is not None:
            norm = flat_runs(obs.params[name]).norm(dim=1)
            out[f"{name}/effective_lr"] = lr / norm ** (degree + 1)
    return out
