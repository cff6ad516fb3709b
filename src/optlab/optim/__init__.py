"""Optimizers: pure update rules (``rules``), decay variants (``decay``) and torch.optim shells.

``RULES`` maps an optimizer name to its rule and to the hyperparameters it reads from an
``OptimizerSpec``. Numbers among them may differ per run inside one stacked group;
strings and booleans (the decay type, Nesterov, centered) are shared by a group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from optlab.optim import rules
from optlab.optim.shells import SGD, Adam, AdamW, RMSprop


@dataclass(frozen=True)
class Rule:
    update: Callable
    init: Callable
    hyper: Callable[..., dict]  # OptimizerSpec -> keyword arguments of ``update``


def _adam_hyper(spec) -> dict:
    return dict(
        lr=spec.lr,
        beta1=spec.betas[0],
        beta2=spec.betas[1],
        eps=spec.eps,
        weight_decay=spec.weight_decay,
    )


OPTIMIZERS: dict[str, Rule] = {
    "adamw": Rule(rules.adamw, rules.adam_init, lambda s: {**_adam_hyper(s), "decay": s.decay}),
    "adam": Rule(rules.adam, rules.adam_init, _adam_hyper),
    "sgd": Rule(
        rules.sgd,
        rules.momentum_init,
        lambda s: dict(
            lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.nesterov
        ),
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
    ),
}


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
    "RMSprop",
    "Rule",
    "SGD",
    "is_import_path",
    "resolve_import_path",
    "rules",
]
