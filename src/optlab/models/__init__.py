"""The model ladder and the final model, built by name for an environment."""

from __future__ import annotations

from collections.abc import Callable

import torch

from optlab.models.base import Model, Params
from optlab.models.final import Final
from optlab.models.ladder import (
    AbsRelu,
    CenterLabels,
    Centers,
    Exact,
    Generalized,
    LearnOffset,
    OffsetScale,
    PlusMinus,
)
from optlab.tasks.voronoi import Environment


def _fixed(cls: type) -> Callable:
    return lambda spec, env: cls(*_env_centers(env), env.classes)


def _env_centers(env: Environment) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(env.centers), torch.from_numpy(env.center_labels)


MODELS: dict[str, Callable] = {
    "exact": _fixed(Exact),
    "center_labels": _fixed(CenterLabels),
    "learn_offset": _fixed(LearnOffset),
    "offset_scale": _fixed(OffsetScale),
    "abs_relu": _fixed(AbsRelu),
    "plus_minus": _fixed(PlusMinus),
    "centers": lambda spec, env: Centers(*_env_centers(env), env.classes, spec.hidden_dim),
    "generalized": lambda spec, env: Generalized(
        env.dim, env.classes, spec.hidden_dim, spec.activation
    ),
    "final": lambda spec, env: Final(
        env.dim,
        env.classes,
        spec.hidden_dim,
        spec.nonlinearity,
        spec.init,
        spec.layernorm_normalization,
    ),
}

# hidden_dim when a spec leaves it unset: the original study's sizes; None where unused.
MODEL_DEFAULTS: dict[str, int | None] = {
    **{name: None for name in MODELS},
    "centers": 2048,
    "generalized": 2048,
    "final": 512,
}


def build_model(spec, env: Environment) -> Model:
    """The model named by ``spec`` (an ``optlab.config.ModelSpec``) for environment ``env``."""
    return MODELS[spec.name](spec, env)


__all__ = ["MODELS", "MODEL_DEFAULTS", "Model", "Params", "build_model"]
