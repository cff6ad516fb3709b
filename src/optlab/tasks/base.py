"""What every task is: fixed splits of inputs and targets, a loss, and how to describe itself.

A task owns its data and its loss, never the model or the optimizer (the AlgoPerf
boundary). The engine draws training batches from its ``train`` split (a fresh slice
per step in stream mode, which only a task that ``streams`` offers; a reshuffle per
run and epoch in dataset mode; the whole split when the batch covers it), evaluates
on ``eval`` at the eval cadence and on ``test`` at the end.

Inputs are (N, ...) tensors; targets are (N,) class indices, (N, T) token indices for
a language model (one target per position), or (N,) floats for a regression.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

Loss = Literal["cross_entropy", "half_mse"]


class Task(Protocol):
    name: str
    loss: Loss  # cross-entropy over ``classes`` logits, or ½·mean squared error
    classes: int  # logits per target (the vocabulary for a language model); 1 for a regression
    streams: bool  # can hand out fresh training points every step (train.data = "stream")
    input_shape: tuple[int, ...]  # one example's shape: what a model's factory is built for

    def tensors(self, split: str, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Inputs and targets of ``split`` ("train", "eval" or "test") on ``device``."""
        ...

    def summary(self) -> dict:
        """Sizes, classes or vocabulary, and whatever identifies the data (``optlab task``)."""
        ...

    def arrays(self) -> dict[str, Tensor]:
        """Task-level arrays that pictures of predictions need (may be empty)."""
        ...


def split_tensors(
    inputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], split: str, device
) -> tuple[Tensor, Tensor]:
    """A split's arrays of inputs and targets as torch tensors on ``device``."""
    return torch.from_numpy(inputs[split]).to(device), torch.from_numpy(targets[split]).to(device)


def class_counts(labels: dict[str, np.ndarray], classes: int) -> dict[str, dict]:
    """Per split its size, class counts and majority-class accuracy (the floor a classifier
    must beat)."""
    out = {}
    for split, y in labels.items():
        counts = np.bincount(y, minlength=classes)
        n = int(counts.sum())
        out[split] = {
            "n": n,
            "class_counts": counts.tolist(),
            "majority_accuracy": float(counts.max() / n) if n else float("nan"),
        }
    return out


def extra_metrics(task: Task, loss: Tensor) -> dict[str, Tensor]:
    """Metrics a task reports beside loss and accuracy: a language model's loss in bits
    per character, loss / ln 2 (its loss is the mean cross-entropy per character in nats)."""
    if getattr(task, "bits_per_char", False):
        return {"bits_per_char": loss / math.log(2)}
    return {}
