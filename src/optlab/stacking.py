"""Helpers for tensors with a leading run axis R (DESIGN principle 3)."""

from __future__ import annotations

import torch
from torch import Tensor


def per_run(t: Tensor | float, ndim: int) -> Tensor | float:
    """View a stacked (R, ...) tensor with singleton axes after R so it broadcasts against
    a tensor of ``ndim`` dims; numbers pass through unchanged."""
    if not isinstance(t, Tensor):
        return t
    return t.reshape(t.shape[0], *([1] * (ndim - t.dim())), *t.shape[1:])


def flat_runs(t: Tensor) -> Tensor:
    """A stacked (R, ...) tensor as (R, n), out of autograd: one row of entries per run."""
    return t.detach().reshape(t.shape[0], -1)


def run_axes(t: Tensor) -> tuple[int, ...]:
    """Every axis but the run axis: reduce over these for a per-run, per-tensor statistic."""
    return tuple(range(1, t.dim()))


def stack_runs(per_run_params: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack R runs' parameter dicts into one dict of (R, ...) tensors."""
    return {name: torch.stack([p[name] for p in per_run_params]) for name in per_run_params[0]}
