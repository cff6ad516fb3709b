"""Models by name: the ladder and the final model of Yu (2022), the essay's linear toy, and
any ``nn.Module`` factory (``optlab.models.module``), built for a task."""

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
from optlab.models.linear import Linear
from optlab.models.module import ModuleModel


class ModelTaskError(ValueError):
    """A model that cannot serve the chosen task: one line for the user."""


def _env_centers(task) -> tuple[torch.Tensor, torch.Tensor]:
    if not hasattr(task, "centers"):
        raise ModelTaskError(
            f"model.name: the ladder's rungs read the voronoi task's centers; task "
            f"{task.name!r} has none (use final, or an nn.Module)"
        )
    return torch.from_numpy(task.centers), torch.from_numpy(task.center_labels)


def _fixed(cls: type) -> Callable:
    return lambda spec, task: cls(*_env_centers(task), task.classes)


def _flat_input(task) -> int:
    if len(task.input_shape) != 1:
        raise ModelTaskError(f"model.name: needs flat inputs; {task.name} has {task.input_shape}")
    return task.input_shape[0]


MODELS: dict[str, Callable] = {
    "exact": _fixed(Exact),
    "center_labels": _fixed(CenterLabels),
    "learn_offset": _fixed(LearnOffset),
    "offset_scale": _fixed(OffsetScale),
    "abs_relu": _fixed(AbsRelu),
    "plus_minus": _fixed(PlusMinus),
    "centers": lambda spec, task: Centers(*_env_centers(task), task.classes, spec.hidden_dim),
    "generalized": lambda spec, task: Generalized(
        _flat_input(task), task.classes, spec.hidden_dim, spec.activation
    ),
    "final": lambda spec, task: Final(
        _flat_input(task),
        task.classes,
        spec.hidden_dim,
        spec.nonlinearity,
        spec.init,
        spec.layernorm_normalization,
    ),
    "linear": lambda spec, task: Linear(_flat_input(task)),
}

# hidden_dim when a spec leaves it unset: the original study's sizes; None where unused.
MODEL_DEFAULTS: dict[str, int | None] = {
    **{name: None for name in MODELS},
    "centers": 2048,
    "generalized": 2048,
    "final": 512,
}


def build_model(spec, task) -> Model:
    """The model named by ``spec`` (an ``optlab.config.ModelSpec``) for ``task``."""
    if spec.name in MODELS:
        return MODELS[spec.name](spec, task)
    return ModuleModel(spec.name, spec.kwargs, task.tensors("eval")[0][:1], task.classes)


__all__ = ["MODELS", "MODEL_DEFAULTS", "Model", "ModelTaskError", "Params", "build_model"]
