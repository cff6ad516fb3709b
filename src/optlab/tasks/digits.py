"""scikit-learn's 8×8 handwritten digits: a small real image task (1,797 images, 10 classes).

The images ship inside scikit-learn (no download). Pixels, integers 0–16, are scaled
to [0, 1] and flattened to 64 inputs. The train / eval / test split is stratified by
class and fixed by the task seed, separate from the training seed, so that many
training seeds share one split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from optlab.tasks.base import Loss, class_counts, split_tensors

SPLITS = ("train", "eval", "test")
PIXEL_MAX = 16.0  # load_digits pixels are counts 0..16 of a 4×4 block of a 32×32 bitmap


@dataclass(frozen=True)
class Digits:
    """The digits split three ways: (n, 64) float32 pixels and (n,) int64 labels per split."""

    inputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    seed: int
    name: str = "digits"
    loss: Loss = "cross_entropy"
    classes: int = 10
    streams: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: 64 pixels, the 8×8 image flattened."""
        return self.inputs["train"].shape[1:]

    def tensors(
        self, split: str, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's pixels and labels as torch tensors on ``device``."""
        return split_tensors(self.inputs, self.labels, split, device)

    def summary(self) -> dict:
        """Per split its size, class counts and majority-class accuracy; the input shape and seed."""
        out: dict = {
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "seed": self.seed,
        }
        return {**out, **class_counts({s: self.labels[s] for s in SPLITS}, self.classes)}

    def arrays(self) -> dict[str, torch.Tensor]:
        """No task-level arrays: pictures of predictions need nothing beyond the splits."""
        return {}


@lru_cache(maxsize=4)
def make_digits(seed: int = 0, eval_fraction: float = 0.15, test_fraction: float = 0.15) -> Digits:
    """Load the digits and split them, stratified by class, by ``seed`` (cached per process).

    The test split is cut first from the whole, then the eval split from the rest, its
    fraction rescaled so that both are the requested fractions of all 1,797 images.
    """
    x, y = load_digits(return_X_y=True)
    x = (x / PIXEL_MAX).astype(np.float32)
    y = y.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    x_train, x_eval, y_train, y_eval = train_test_split(
        x_rest,
        y_rest,
        test_size=eval_fraction / (1.0 - test_fraction),
        stratify=y_rest,
        random_state=seed,
    )
    return Digits(
        inputs={"train": x_train, "eval": x_eval, "test": x_test},
        labels={"train": y_train, "eval": y_eval, "test": y_test},
        seed=seed,
    )
