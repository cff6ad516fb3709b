"""Grafting (AdaGraft, Agarwal et al. 2020, in Grosse 2022, CSC 2541 lecture 5): the step size of one optimizer with
the direction of another.

Each child (magnitude M, direction D) is any built-in rule with its own hyperparameters and
state; the graft's hyperparameters hold each child's as a dict with its rule's name under
``"rule"``, and its state holds each child's state under prefixed names ("magnitude.exp_avg").
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from optlab.optim.rules import State
from optlab.stacking import per_run, run_axes


def _child_steps(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    magnitude: dict,
    direction: dict,
    rules: Mapping,
) -> tuple[Tensor, Tensor, State]:
    """Δ_M = M(θ, g) − θ and Δ_D = D(θ, g) − θ, and both children's new state; ``rules``
    maps a child's name to its rule (the registry that holds graft too passes itself)."""
    deltas, new_state = [], {}
    for role, child in (("magnitude", magnitude), ("direction", direction)):
        prefix = f"{role}."
        own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        own = own or rules[child["rule"]].init(param)  # created on the first step
        hyper = {k: v for k, v in child.items() if k != "rule"}
        moved, own = rules[child["rule"]].update(param, grad, own, step, **hyper)
        deltas.append(moved - param)
        new_state.update({prefix + k: v for k, v in own.items()})
    return deltas[0], deltas[1], new_state


def _sq_norm(x: Tensor) -> Tensor:
    """‖x‖² of each run's tensor: shape (R,)."""
    return x.pow(2).sum(dim=run_axes(x)) if x.dim() > 1 else x.pow(2)


def _ratio(num_sq: Tensor, den_sq: Tensor) -> Tensor:
    """‖Δ_M‖/‖Δ_D‖ per run, 0 where Δ_D = 0 (no direction to take)."""
    den = den_sq.sqrt()
    moving = den > 0
    return torch.where(moving, num_sq.sqrt() / torch.where(moving, den, 1.0), 0.0)


def graft(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    magnitude: dict,
    direction: dict,
    rules: Mapping,
    graft: str = "tensor",
) -> tuple[Tensor, State]:
    """Graft(M, D) on one tensor (layer-wise, as Agarwal et al. run it in practice):

    θ_t = θ + (‖Δ_M‖/‖Δ_D‖)·Δ_D,   Δ_M = M(θ, g) − θ,  Δ_D = D(θ, g) − θ

    (Grosse 2022, CSC 2541 lecture 5, Algorithm 2, with ε = 0 and a step of 0 where Δ_D = 0). This function is the
    per-tensor form whatever ``graft`` says; ``graft_tree``, which the engine and the shells
    call, takes the norms over all parameters together for ``graft = "global"``.
    """
    dm, dd, new_state = _child_steps(param, grad, state, step, magnitude, direction, rules)
    scale = _ratio(_sq_norm(dm), _sq_norm(dd))
    return param + per_run(scale, param.dim()) * dd, new_state


def graft_tree(
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    states: dict[str, State],
    step: int,
    hypers: dict[str, dict],
    *,
    rules: Mapping,
) -> tuple[dict[str, Tensor], dict[str, State]]:
    """Graft over a dict of parameters: per tensor, or with ‖Δ_M‖ and ‖Δ_D‖ taken over all
    parameters of each run (``graft = "global"``, the seed's w as one vector)."""
    steps = {
        k: _child_steps(
            p, grads[k], states[k], step, hypers[k]["magnitude"], hypers[k]["direction"], rules
        )
        for k, p in params.items()
    }
    new_states = {k: s for k, (_, _, s) in steps.items()}
    if next(iter(hypers.values()), {}).get("graft") == "global":
        num = sum(_sq_norm(dm) for dm, _, _ in steps.values())
        den = sum(_sq_norm(dd) for _, dd, _ in steps.values())
        scales = dict.fromkeys(params, _ratio(num, den))
    else:
        scales = {k: _ratio(_sq_norm(dm), _sq_norm(dd)) for k, (dm, dd, _) in steps.items()}
    new_params = {k: p + per_run(scales[k], p.dim()) * steps[k][1] for k, p in params.items()}
    return new_params, new_states
