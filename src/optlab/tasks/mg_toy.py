"""The memorize-or-generalize toy of the 2023 essay on AdamW.

n samples x_i = [e_i, 1] ∈ ℝ^{n+1} (a one-hot "memorizer" coordinate and a shared
constant "generalizer" coordinate), every target y_i = 1, and ½·mean squared error. A
linear model w ∈ ℝ^{n+1} fits it exactly by any w with w_i + w_{n+1} = 1 for all i: it
can memorize (w_i = 1, w_{n+1} = 0) or generalize (w_i = 0, w_{n+1} = 1), and which one an
optimizer finds is the question. There is nothing held out: eval and test are the
training set itself.

Where gradient descent goes. With X the n × (n+1) matrix of the x_i, the loss
L(w) = ‖Xw − 1‖²/(2n) has gradient ∇L = Xᵀ(Xw − 1)/n, a combination of the x_i. From
w = 0, every SGD iterate, and every heavy-ball one (a sum of past gradients), stays in
span{x_i}. That span's orthogonal complement is u = (1, …, 1, −1) (u·x_i = 1 − 1 = 0), so
w is in it exactly when w_{n+1} = Σ_i w_i. With the fit w_i = 1 − w_{n+1} for every i this
gives w_{n+1} = n(1 − w_{n+1}): the generalizer n/(n+1) and each memorizer 1/(n+1) (1/101
and 100/101 at n = 100). It is the fit of least L2 norm: any other fit adds a multiple of
u, orthogonal to it (Pythagoras).

Where Adam goes. In full batch every residual is the same r_t (the memorizers move
alike), so the gradient is r_t/n on each memorizer and r_t on the generalizer: one history
scaled by n. Adam's step m̂/(√v̂ + ε) does not change when a coordinate's gradients are all
scaled, ε aside, so every coordinate moves by the same amount at every step (the first by
exactly lr) and they meet the fit w_i + w_{n+1} = 1 at ½ and ½. That is the fit of least L∞
norm: max(w_i, w_{n+1}) ≥ ½ on any fit. Decoupled weight decay (AdamW) shrinks equal
weights equally, so full-batch AdamW keeps them equal too; only ε, once the memorizers'
gradients fall to its size, tells them apart.
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
