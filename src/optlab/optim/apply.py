"""Applying a rule to a dict of parameters, and resolving its hyperparameters per step and
per parameter: shared by the stacked engine and the torch.optim shells.

A rule's hyperparameters are a dict (numbers or (R,) tensors, names, and, for a graft,
its children's dicts). Schedules scale every ``lr`` and ``eps`` in it, decay groups set
every ``weight_decay``, and decay dropout gets each run's generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from optlab.optim.rules import State


def tree_step(
    rule,
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    states: dict[str, State],
    step: int,
    hypers: dict[str, dict],
) -> tuple[dict[str, Tensor], dict[str, State]]:
    """One step of ``rule`` on every parameter (tensor by tensor unless the rule has a
    ``tree`` form that looks at all of them, as a global graft does)."""
    if rule.tree is not None:
        return rule.tree(params, grads, states, step, hypers)
    new_params, new_states = {}, {}
    for k, p in params.items():
        new_params[k], new_states[k] = rule.update(p, grads[k], states[k], step, **hypers[k])
    return new_params, new_states


def _map(hyper: dict, leaf) -> dict:
    """Apply ``leaf(key, value)`` to every entry of a hyperparameter dict, children included."""
    return {k: _map(v, leaf) if isinstance(v, dict) else leaf(k, v) for k, v in hyper.items()}


def scaled(hyper: dict, lr: float | Tensor = 1.0, eps: float = 1.0) -> dict:
    """η ← η·lr and ε ← ε·eps everywhere in ``hyper`` (a factor of 1 leaves values as they are;
    a factor may be an (R,) tensor, one per run)."""
    factors = {"lr": lr, "eps": eps}

    def leaf(key: str, value: Any) -> Any:
        f = factors.get(key, 1.0)
        return value if not isinstance(f, Tensor) and f == 1.0 else value * f

    return _map(hyper, leaf)


def at_step(hyper: dict, lr: float | Tensor, eps: float, eps_lr_ratio: float | None) -> dict:
    """``hyper`` at one step: η and ε scaled by their schedules' factors, and the ratio r_t
    where ε is tied to η (``schedules.lr_equivalent_eps``)."""
    hyper = scaled(hyper, lr=lr, eps=eps)
    return hyper if eps_lr_ratio is None else {**hyper, "eps_lr_ratio": eps_lr_ratio}


def with_weight_decay(hyper: dict, weight_decay: float) -> dict:
    """λ ← ``weight_decay`` everywhere in ``hyper`` (a decay group's own λ)."""
    return _map(hyper, lambda k, v: weight_decay if k == "weight_decay" else v)


def without_weight_decay(hyper: dict) -> dict:
    """λ ← 0 and decay ← ``none`` everywhere in ``hyper``: the step's adaptive part alone."""
    return _map(
        hyper,
        lambda k, v: 0.0 if k == "weight_decay" else "none" if k == "decay" else v,
    )


def with_generators(hyper: dict, generators: Sequence[torch.Generator]) -> dict:
    """Give every (child) rule whose decay is ``dropout`` the runs' generators."""
    out = {
        k: with_generators(v, generators) if isinstance(v, dict) else v for k, v in hyper.items()
    }
    if out.get("decay") == "dropout":
        out["generators"] = generators
    return out
