"""The memorize-or-generalize toy of the 2023 essay on AdamW.

n samples x_i = [e_i, 1] ∈ ℝ^{n+1} (a one-hot "memorizer" coordinate and a shared
constant "generalizer" coordinate), every target y_i = 1, and ½·mean squared error. A
linear model w ∈ ℝ^{n+1} fits it exactly by any w with w_i + w_{n+1} = 1 for all i: it
can memorize (w_i = 1, w_{n+1} = 0) or generalize (w_i = 0, w_{n+1} = 1), and which one an
optimizer finds is the question. There is nothing held out: eval and test are the
training set itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


@dataclass(frozen=True)
class MgToy:
    samples: int
    name: str = "mg_toy"
    loss: str = "half_mse"
    classes: int = 1
    streams: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.samples + 1,)

    def tensors(self, split: str, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """x (n, n+1) = [I_n | 1] and y = 1 (n,), in float32 (the engine casts to its dtype)."""
        x = torch.cat([torch.eye(self.samples), torch.ones(self.samples, 1)], dim=1)
        return x.to(device), torch.ones(self.samples, device=device)

    def summary(self) -> dict:
        return {
            "task": self.name,
            "samples": self.samples,
            "weights": self.samples + 1,
            "loss": self.loss,
            "min_norm_solution": {
                "memorizer": 1 / (self.samples + 1),
                "generalizer": self.samples / (self.samples + 1),
            },
        }

    def arrays(self) -> dict[str, Tensor]:
        return {}


@lru_cache(maxsize=4)
def make_mg_toy(samples: int = 100) -> MgToy:
    return MgToy(samples)
