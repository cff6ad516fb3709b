"""Weight-decay groups by parameter name (the 2025 thesis notepad on Constrained Parameter Regularization:
one λ per group of parameters; e.g. no decay on layernorm gains), as a mask over names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

import torch


def weight_decay_for(name: str, groups: Mapping[str, float]) -> float | None:
    """λ of the first pattern in ``groups`` (fnmatch, e.g. ``"*.norm"``) that matches
    ``name``; None when none does (the run's own λ applies)."""
    pattern = _first_match(name, groups)
    return None if pattern is None else groups[pattern]


def _first_match(name: str, patterns: Iterable[str]) -> str | None:
    return next((p for p in patterns if fnmatchcase(name, p)), None)


def param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    groups: Mapping[str, float],
    weight_decay: float,
) -> list[dict]:
    """torch.optim parameter groups: one per pattern that matches something, with its λ, and
    one for the rest with ``weight_decay``; for any optimizer that reads ``weight_decay``."""
    buckets: dict[str | None, list] = {}
    for name, p in named_parameters:
        key = _first_match(name, groups)
        buckets.setdefault(key, []).append(p)
    return [
        {"params": ps, "weight_decay": weight_decay if key is None else groups[key]}
        for key, ps in buckets.items()
    ]
