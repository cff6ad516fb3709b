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
    """plus_minus (or, with ``learned_centers``, centers) from seed 002 §3.1, as nn.Parameters."""

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


class Final(nn.Module):
    """The final model (seed 002 Algorithm 4) with ReLU, uniform init, no normalisation."""

    def __init__(self, dim: int, hidden: int, classes: int):
        super().__init__()
        self.n1, self.na = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(hidden))
        self.n2, self.nf = nn.Parameter(torch.ones(hidden)), nn.Parameter(torch.ones(classes))
        self.l1a, self.l1b = (
            nn.Linear(dim, hidden, bias=False),
            nn.Linear(hidden, hidden, bias=False),
        )
        self.l2a, self.l2b = (
            nn.Linear(hidden, hidden, bias=False),
            nn.Linear(hidden, classes, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l1b(F.relu(self.l1a(self.n1 * x / 100)))
        h = torch.softmax(self.na * h, dim=-1)
        return self.nf * self.l2b(F.relu(self.l2a(self.n2 * h)))


def plain_steps_per_s(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    eval_every: int = 50,
) -> float:
    """Steps per second of the plain loop, with an eval every ``eval_every`` steps as optlab does."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    start = time.perf_counter()
    for t in range(steps):
        loss = F.cross_entropy(
            model(x[t * batch : (t + 1) * batch]), y[t * batch : (t + 1) * batch]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (t + 1) % eval_every == 0:
            with torch.no_grad():
                F.cross_entropy(model(eval_x), eval_y).item()
    return steps / (time.perf_counter() - start)
