"""Training batches for a group of runs.

``stream`` (the paper's): batch t is training points [tB, (t+1)B) of the environment,
fresh every step and shared by every run, so the training seed varies only the
initialisation. ``dataset``: a fixed training set, reshuffled every epoch by each
run's own training seed (incomplete last batches are dropped), or the full set every
step when the batch covers it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.tasks.voronoi import Environment

SAMPLING_SALT = 0x5EED  # keeps the sampling stream apart from the init stream of the same seed


class Batches:
    def __init__(
        self,
        env: Environment,
        mode: str,
        batch_size: int,
        seeds: Sequence[int],
        device: torch.device,
    ) -> None:
        self.x, self.y = env.tensors("train", device)
        self.mode, self.batch_size = mode, batch_size
        self.full = mode == "dataset" and batch_size >= len(self.x)
        self.generators = [torch.Generator().manual_seed(s ^ SAMPLING_SALT) for s in seeds]
        self.order: Tensor | None = None
        self.pos = 0

    def __call__(self, t: int) -> tuple[Tensor, Tensor]:
        """Batch for step t (from 0): x (1 or R, B, D) and y (1 or R, B)."""
        if self.full:
            return self.x[None], self.y[None]
        b = self.batch_size
        if self.mode == "stream":
            return self.x[None, t * b : (t + 1) * b], self.y[None, t * b : (t + 1) * b]
        n = len(self.x)
        if self.order is None or self.pos + b > n:
            perms = [torch.randperm(n, generator=g) for g in self.generators]
            self.order, self.pos = torch.stack(perms).to(self.x.device), 0
        idx = self.order[:, self.pos : self.pos + b]
        self.pos += b
        return self.x[idx], self.y[idx]
