"""Probes of the optimizer: its moment estimates, and what each step was made of."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.optim.closed_form import angle, distance_from_decayed_init
from optlab.probes.base import Observation, Params, Update
from optlab.stacking import flat_runs


def adam_moments(obs: Observation) -> dict[str, tuple[Tensor, Tensor]]:
    """Per tensor, Adam's bias-corrected m̂ = m_t/(1 − β1^t) and v̂ = v_t/(1 − β2^t) flattened
    to (R, d); empty for rules without Adam's moments or before the first step."""
    opt = obs.optimizer
    if opt is None or opt.t == 0 or opt.torch_optimizer is not None:
        return {}
    out = {}
    for name, s in opt.state.items():
        hyper = opt.hyper_for(name)
        if {"exp_avg", "exp_avg_sq"} <= set(s) and {"beta1", "beta2"} <= set(hyper):
            t, b1, b2 = opt.t, hyper["beta1"], hyper["beta2"]
            m = flat_runs(s["exp_avg"]) / (1 - b1**t)[:, None]
            v = flat_runs(s["exp_avg_sq"]) / (1 - b2**t)[:, None]
            out[name] = (m, v)
    return out


def moments(obs: Observation) -> dict[str, Tensor]:
    """min / median / max of √v̂ and ‖m̂‖ per tensor (``adam_moments``): the preconditioner
    and the momentum Adam-family rules step with. Rules without Adam moments (SGD, RMSprop,
    import paths) record nothing."""
    out = {}
    for name, (m_hat, v_hat) in adam_moments(obs).items():
        sqrt_v_hat = v_hat.sqrt()
        out[f"{name}/sqrt_v_hat_min"] = sqrt_v_hat.amin(1)
        out[f"{name}/sqrt_v_hat_median"] = sqrt_v_hat.median(1).values
        out[f"{name}/sqrt_v_hat_max"] = sqrt_v_hat.amax(1)
        out[f"{name}/m_hat_norm"] = m_hat.norm(dim=1)
    return out


def split_update(optimizer, params: Params, grads: list[Tensor]) -> tuple[Params, Params | None]:
    """Before a step: θ_{t−1}, and the adaptive part of the step, the one the rule takes with
    weight decay off from the same state and gradient (None if the optimizer cannot say)."""
    before = {k: p.detach().clone() for k, p in params.items()}
    proposal = optimizer.without_decay(grads)
    if proposal is None:
        return before, None
    return before, {k: proposal[k] - before[k] for k in before}


def make_update(
    before: Params, adaptive: Params | None, params: Params, grads: Sequence[Tensor]
) -> Update:
    """After the step: Δθ = θ_t − θ_{t−1}, split into the adaptive part and the decay part,
    with the step's gradients (in the order of ``params``)."""
    delta = {k: p.detach() - before[k] for k, p in params.items()}
    decay = None if adaptive is None else {k: delta[k] - adaptive[k] for k in delta}
    grads = {k: g.detach() for k, g in zip(params, grads, strict=True)}
    return Update(before=before, delta=delta, grads=grads, adaptive=adaptive, decay=decay)


def step_ratios(obs: Observation) -> dict[str, Tensor]:
    """Per tensor, relative to ‖θ_{t−1}‖: ``update_ratio`` ‖Δθ‖, ``decay_ratio`` ‖Δθ_decay‖,
    ``adaptive_ratio`` ‖Δθ_adaptive‖, and ``decay_share`` = ‖Δθ_decay‖/(‖Δθ_decay‖ + ‖Δθ_adaptive‖)."""
    u = obs.update
    if u is None:
        return {}
    out = {}
    for name, delta in u.delta.items():
        size = flat_runs(u.before[name]).norm(dim=1)
        out[f"{name}/update_ratio"] = flat_runs(delta).norm(dim=1) / size
        if u.adaptive is None:
            continue
        dec, ada = flat_runs(u.decay[name]).norm(dim=1), flat_runs(u.adaptive[name]).norm(dim=1)
        out[f"{name}/decay_ratio"] = dec / size
        out[f"{name}/adaptive_ratio"] = ada / size
        total = dec + ada
        out[f"{name}/decay_share"] = torch.where(total > 0, dec / total, torch.zeros_like(total))
    return out


def decayed_init(obs: Observation) -> dict[str, Tensor]:
    """The notepad's closed form of decoupled L2 decay (the 2025 thesis notepad): w_k = P_k·w_0 − Σ_j η_j·
    Π_{i>j}(1 − λη_i)·s_j with P_k = Π_{i≤k}(1 − λη_i). Per tensor, ``<tensor>/distance``
    = ‖w_k − P_k w_0‖ (how far the steps carried w beyond its decayed start) and
    ``<tensor>/angle`` between w_k and w_0 (radians); only for rules with decoupled L2 decay."""
    opt = obs.optimizer
    if opt is None or opt.torch_optimizer is not None:
        return {}
    scales = torch.tensor([opt.lr_scale(i) for i in range(1, opt.t + 1)], dtype=torch.float64)
    out = {}
    for name, w in obs.params.items():
        hyper = opt.hypers[name]
        if hyper.get("decay") != "l2":
            continue
        lam_lr = torch.as_tensor(hyper["weight_decay"] * hyper["lr"], dtype=torch.float64)
        p = torch.log1p(-lam_lr.reshape(-1, 1).cpu() * scales).sum(1).exp()  # (R,)
        p = p.to(w.device, w.dtype).reshape(-1, *[1] * (w.dim() - 1))
        w0 = obs.init[name]
        out[f"{name}/distance"] = distance_from_decayed_init(w.detach(), w0, p)
        out[f"{name}/angle"] = angle(w.detach(), w0)
    return out
