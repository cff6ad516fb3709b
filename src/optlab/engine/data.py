"""Training batches for a group of runs.

``stream`` (the paper's, for a task that streams): batch t is training points [tB, (t+1)B),
fresh every step and shared by every run, so the training seed varies only the
initialisation. ``dataset``: a fixed training set, reshuffled every epoch by each
run's own training seed (incomplete last batches are dropped), or the full set every
step when the batch covers it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.tasks import Task

SAMPLING_SALT = 0x5EED  # keeps the sampling stream apart from the init stream of the same seed


def task_tensors(
    task: Task, split: str, device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """A split's inputs and targets on ``device``, floating-point ones in ``dtype``."""
    x, y = task.tensors(split, device)
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in (x, y))


class Batches:
    def __init__(
        self,
        task: Task,
        mode: str,
        batch_size: int | Sequence[int],
        seeds: Sequence[int],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """``batch_size``: one B for every step, or B_t for each step t (a batch schedule);
        floating-point data in ``dtype``."""
        self.x, self.y = task_tensors(task, "train", device, dtype)
        self.mode = mode
        self.sizes = [batch_size] if isinstance(batch_size, int) else list(batch_size)
        self.starts = list(itertools.accumulate(self.sizes, initial=0))  # stream offsets
        self.generators = [torch.Generator().manual_seed(s ^ SAMPLING_SALT) for s in seeds]
        self.order: Tensor | None = None
        self.pos = 0

    @property
    def effective_sizes(self) -> list[int]:
        """B_t for every step: in dataset mode a batch that covers the set is the set."""
        n = len(self.x)
        return [min(b, n) if self.mode == "dataset" else b for b in self.sizes]

    def __call__(self, t: int) -> tuple[Tensor, Tensor]:
        """Batch for step t (from 0): x (1 or R, B_t, ...) and y (1 or R, B_t, ...)."""
        b = self.sizes[min(t, len(self.sizes) - 1)]
        n = len(self.x)
        if self.mode == "dataset" and b >= n:
            return self.x[None], self.y[None]
        if self.mode == "stream":
            lo = t * b if len(self.sizes) == 1 else self.starts[t]
            return self.x[None, lo : lo + b], self.y[None, lo : lo + b]
        if self.order is None or self.pos + b > n:
            perms = [torch.randperm(n, generator=g) for g in self.generators]
            self.order, self.pos = torch.stack(perms).to(self.x.device), 0
        idx = self.order[:, self.pos : self.pos + b]
        self.pos += b
        return self.x[idx], self.y[idx]
