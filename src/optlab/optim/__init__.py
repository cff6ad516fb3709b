"""Optimizers: pure update rules, decay variants, schedules, grafting and torch.optim shells.

``OPTIMIZERS`` maps an optimizer name to its rule and to the hyperparameters it reads from
an ``OptimizerSpec``. Numbers among them may differ per run inside one stacked group;
strings and booleans (the decay type, Nesterov, centered, blocks) are shared by a group.
``optlab.config.make_optimizer`` builds a torch.optim shell over any of them from the same
fields.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from optlab.optim import kfac, rules, sign, variants
from optlab.optim.closed_form import (
    angle,
    decay_products,
    decayed_weights,
    distance_from_decayed_init,
)
from optlab.optim.graft import graft, graft_tree
from optlab.optim.groups import param_groups
from optlab.optim.schedules import LambdaEps
from optlab.optim.shells import SGD, Adam, AdamW, RMSprop, RuleShell


@dataclass(frozen=True)
class Rule:
    """``step_degree`` is k in Δθ(c·g) = c^k·Δθ(g), the step's degree of homogeneity in the
    gradients (every gradient scaled by c, decay aside): 1 where the step scales with the
    gradient (SGD, with or without momentum), 0 where it does not (Adam's m̂/√v̂, RMSprop's
    g/√v, a sign; up to ε), −1 for K-FAC (its factor G scales as c², so G⁻¹∇ as 1/c; up
    to damping). On a scale-invariant w the gradient scales as 1/‖w‖, so the
    direction turns as η/‖w‖^(k+1) (Grosse (2022), CSC 2541 lecture 5). None: the rule's
    hyperparameters decide (a graft steps as far as its magnitude child)."""

    update: Callable
    init: Callable
    hyper: Callable[..., dict]  # OptimizerSpec -> keyword arguments of ``update``
    step_degree: int | None
    tree: Callable | None = None  # a step over all parameters at once, where the rule needs one


def _decoupled_hyper(spec) -> dict:
    return dict(
        weight_decay=spec.weight_decay,
        decay=spec.decay,
        decay_beta=spec.decay_beta,
        decay_strength=spec.decay_strength,
        decay_p=spec.decay_p,
    )


def _adam_hyper(spec) -> dict:
    return dict(
        lr=spec.lr,
        beta1=spec.betas[0],
        beta2=spec.betas[1],
        eps=spec.eps,
        weight_decay=spec.weight_decay,
    )


def _graft_hyper(spec) -> dict:
    children = {}
    for role in ("magnitude", "direction"):
        child = spec.child(role)
        children[role] = {"rule": child.name, **OPTIMIZERS[child.name].hyper(child)}
    return {**children, "graft": spec.graft}


def _no_state(param: torch.Tensor) -> rules.State:
    return {}


OPTIMIZERS: dict[str, Rule] = {
    "adamw": Rule(
        rules.adamw,
        rules.adam_init,
        lambda s: {**_adam_hyper(s), **_decoupled_hyper(s)},
        step_degree=0,
    ),
    "adam": Rule(rules.adam, rules.adam_init, _adam_hyper, step_degree=0),
    "sgd": Rule(
        rules.sgd,
        rules.momentum_init,
        lambda s: dict(
            lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.nesterov
        ),
        step_degree=1,
    ),
    "rmsprop": Rule(
        rules.rmsprop,
        rules.rmsprop_init,
        lambda s: dict(
            lr=s.lr,
            alpha=s.alpha,
            eps=s.eps,
            weight_decay=s.weight_decay,
            momentum=s.momentum,
            centered=s.centered,
        ),
        step_degree=0,
    ),
    "nested_adam": Rule(
        variants.nested_adam,
        variants.nested_init,
        lambda s: {**_adam_hyper(s), **_decoupled_hyper(s), "bias_correction": s.bias_correction},
        step_degree=0,
    ),
    "blockwise_adam": Rule(
        variants.blockwise_adam,
        rules.adam_init,
        lambda s: {
            **_adam_hyper(s),
            **_decoupled_hyper(s),
            "blocks": s.blocks,
            "block_size": s.block_size,
        },
        step_degree=0,
    ),
    "harmonic": Rule(
        variants.harmonic_adam,
        rules.adam_init,
        lambda s: {**_adam_hyper(s), **_decoupled_hyper(s)},
        step_degree=0,
    ),
    "signsgd": Rule(
        sign.signsgd, _no_state, lambda s: {"lr": s.lr, **_decoupled_hyper(s)}, step_degree=0
    ),
    "signum": Rule(
        sign.signum,
        sign.signum_init,
        lambda s: {"lr": s.lr, "beta1": s.betas[0], **_decoupled_hyper(s)},
        step_degree=0,
    ),
}
# K-FAC steps a layer at a time from the Kronecker factors the engine folds into its state
OPTIMIZERS["kfac"] = Rule(
    kfac.kfac,
    _no_state,
    lambda s: dict(
        lr=s.lr,
        momentum=s.momentum,
        weight_decay=s.weight_decay,
        decay=s.decay,
        curvature=s.curvature,
        damping=s.damping,
        inverse_every=s.inverse_every,
        factor_decay=s.factor_decay,
    ),
    step_degree=-1,
    tree=kfac.kfac_tree,
)
# a graft's children are rules of this registry, which then holds graft too
OPTIMIZERS["graft"] = Rule(
    functools.partial(graft, rules=OPTIMIZERS),
    _no_state,
    _graft_hyper,
    step_degree=None,
    tree=functools.partial(graft_tree, rules=OPTIMIZERS),
)


def resolve_import_path(name: str) -> type[torch.optim.Optimizer] | None:
    """The ``torch.optim.Optimizer`` subclass at ``module.Class``, or None."""
    module, _, attr = name.rpartition(".")
    if not module:
        return None
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) else None


def is_import_path(name: str) -> bool:
    return resolve_import_path(name) is not None


__all__ = [
    "OPTIMIZERS",
    "Adam",
    "AdamW",
    "LambdaEps",
    "RMSprop",
    "Rule",
    "RuleShell",
    "SGD",
    "angle",
    "decay_products",
    "decayed_weights",
    "distance_from_decayed_init",
    "is_import_path",
    "param_groups",
    "resolve_import_path",
    "rules",
]
