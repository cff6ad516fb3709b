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
        self.mode, self.dtype = mode, dtype
        self.sizes = [batch_size] if isinstance(batch_size, int) else list(batch_size)
        self.starts = list(itertools.accumulate(self.sizes, initial=0))  # stream offsets
        self.generators = [torch.Generator().manual_seed(s ^ SAMPLING_SALT) for s in seeds]
        n = len(self.x) if mode == "dataset" else 0  # a stream has no epochs
        self.order = torch.empty(len(seeds), n, dtype=torch.long, device=device)
        self.pos = [n] * len(seeds)  # each run's place in its epoch; n: draw one first

    @property
    def effective_sizes(self) -> list[int]:
        """B_t for every step: in dataset mode a batch that covers the set is the set."""
        n = len(self.x)
        return [min(b, n) if self.mode == "dataset" else b for b in self.sizes]

    def __call__(self, t: int) -> tuple[Tensor, Tensor]:
        """Batch for step t (from 0): x (1 or R, B_t, ...) and y (1 or R, B_t, ...)."""
        b = self.sizes[min(t, len(self.sizes) - 1)]
        if self.mode == "stream":
            lo = t * b if len(self.sizes) == 1 else self.starts[t]
            return self.x[None, lo : lo + b], self.y[None, lo : lo + b]
        n = len(self.x)
        if b >= n:
            return self.x[None], self.y[None]
        pos = self.pos[0]  # every run at the same place: one shared slice, as ``per_run`` draws
        if pos + b > n:
            perms = [torch.randperm(n, generator=g) for g in self.generators]
            self.order = torch.stack(perms).to(self.order.device)
            pos = 0
        self.pos = [pos + b] * len(self.generators)
        idx = self.order[:, pos : pos + b]
        return self.x[idx], self.y[idx]

    def per_run(self, sizes: Sequence[int]) -> tuple[Tensor, Tensor, Tensor | None]:
        """Dataset mode, run r's next ``sizes[r]`` examples of its own epoch (each run's
        training seed reshuffles the set when its epoch has too few left; the whole set, in
        order, where the batch covers it): x and y (1 or R, B, ...), B the largest, each
        run's batch a prefix padded with example 0, and the mask (R, B) of each run's own
        examples (None where every run takes B)."""
        n = len(self.x)
        sizes = [min(b, n) for b in sizes]
        if all(b == n for b in sizes):
            return self.x[None], self.y[None], None
        rows = []
        for r, b in enumerate(sizes):
            if b == n:
                rows.append(torch.arange(n, device=self.order.device))
                continue
            if self.pos[r] + b > n:
                self.order[r] = torch.randperm(n, generator=self.generators[r]).to(
                    self.order.device
                )
                self.pos[r] = 0
            rows.append(self.order[r, self.pos[r] : self.pos[r] + b])
            self.pos[r] += b
        width = max(sizes)
        if all(b == width for b in sizes):
            idx = torch.stack(rows)
            return self.x[idx], self.y[idx], None
        idx = torch.zeros(len(rows), width, dtype=torch.long, device=self.order.device)
        for r, row in enumerate(rows):
            idx[r, : len(row)] = row
        counts = torch.tensor(sizes, device=self.order.device)
        mask = (torch.arange(width, device=counts.device) < counts[:, None]).to(self.dtype)
        return self.x[idx], self.y[idx], mask
