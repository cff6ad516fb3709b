"""The loops a user would write instead of optlab: an nn.Module, torch.optim.AdamW, nothing else.

Used by ``optlab bench`` as the baseline each optlab case is measured against, side by
side in one process.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


class PlusMinus(nn.Module):
    """plus_minus (or, with ``learned_centers``, centers) from Yu 2022 §3.1, as nn.Parameters."""

    def __init__(self, centers: torch.Tensor, classes: int, learned_centers: int | None = None):
        super().__init__()
        if learned_centers:
            self.centers = nn.Parameter(100 * torch.randn(learned_centers, centers.shape[1]))
        else:
            self.register_buffer("centers", centers)
        self.offset = nn.Parameter(torch.rand(()))
        self.scale = nn.Parameter(torch.ones(()))
        self.plus_minus = nn.Parameter(0.4 * torch.tensor([-1.0, 1.0]))
        self.head = nn.Linear(self.centers.shape[0], classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_hat = self.centers / self.centers.pow(2).sum(-1, keepdim=True)
        z = (x @ c_hat.T - self.offset).unsqueeze(-1) * self.plus_minus
        return self.head(torch.softmax(-self.scale * F.relu(z).sum(-1), dim=-1))


class ReducedLayerNorm(nn.Module):
    """A weight vector initialised to 1, optionally after x·rsqrt(mean(x²) + 1e-6)."""

    def __init__(self, n: int, normalize: bool = False):
        super().__init__()
        self.weight, self.normalize = nn.Parameter(torch.ones(n)), normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * x


class Dense(nn.Module):
    """ReducedLayerNorm(in) → Linear(in→hid) → act → Linear(hid→out), no biases."""

    def __init__(self, d_in: int, hidden: int, d_out: int, act: nn.Module, normalize: bool):
        super().__init__()
        self.norm = ReducedLayerNorm(d_in, normalize)
        self.w1 = nn.Linear(d_in, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_out, bias=False)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.w1(self.norm(x))))


class ReducedAttention(nn.Module):
    """ReducedLayerNorm(H), then a softmax over the H features."""

    def __init__(self, hidden: int, normalize: bool):
        super().__init__()
        self.norm = ReducedLayerNorm(hidden, normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.norm(x), dim=-1)


class Final(nn.Module):
    """The final model (Yu 2022 Algorithm 4) as plain modules, PyTorch's default init."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        classes: int,
        act: nn.Module | None = None,
        normalize: bool = False,
    ):
        super().__init__()
        act = act or nn.ReLU()
        self.dense1 = Dense(dim, hidden, hidden, act, normalize)
        self.attention = ReducedAttention(hidden, normalize)
        self.dense2 = Dense(hidden, hidden, classes, act, normalize)
        self.final = nn.ModuleDict({"norm": ReducedLayerNorm(classes, normalize)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(self.dense1(x / 100))
        return self.final["norm"](self.dense2(h))


def plain_steps_per_s(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    eval_every: int | None = 50,
) -> float:
    """Steps per second of the plain loop, with an eval every ``eval_every`` steps (or none)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    start = time.perf_counter()
    for t in range(steps):
        loss = F.cross_entropy(
            model(x[t * batch : (t + 1) * batch]), y[t * batch : (t + 1) * batch]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if eval_every and (t + 1) % eval_every == 0:
            with torch.no_grad():
                F.cross_entropy(model(eval_x), eval_y).item()
    return steps / (time.perf_counter() - start)
