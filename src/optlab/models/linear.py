"""A linear model without bias, f(x) = w·x, zero-initialised: the 2023 essay's toy model."""

from __future__ import annotations

import torch
from torch import Tensor

from optlab.models.base import Params


class Linear:
    """w ∈ ℝ^d over a run axis; starts at w = 0 (the essay's init), so no seed changes it."""

    classes = 1
    width = 1

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def init(self, generator: torch.Generator) -> Params:
        return {"w": torch.zeros(self.dim)}

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Outputs (R, B): x (R or 1, B, d) against each run's w (R, d)."""
        return (x @ params["w"][:, :, None])[..., 0]

    def scalars(self, params: Params) -> dict[str, Tensor]:
        """The essay's summary of w (R,) each: the memorizers' mean and spread (max − min)
        over w_1..w_{d−1}, and the generalizer w_d."""
        w = params["w"].detach()
        memorizers = w[:, :-1]
        return {
            "memorizer_mean": memorizers.mean(1),
            "memorizer_spread": memorizers.amax(1) - memorizers.amin(1),
            "generalizer": w[:, -1],
        }

    def to(self, device: torch.device) -> Linear:
        return self
