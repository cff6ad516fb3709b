"""The Voronoi classification environment of Yu (2022) and its code, bri25yu/AdamWAnalysis.

Two labelling rules share one set of random draws:

- ``paper`` reproduces the original generator exactly. A point x takes the label
  of the center c that minimises ``(x·c/‖c‖² − 1)²``. This is *not* a Euclidean
  Voronoi partition: ``x·c/‖c‖² = 1`` is the line through c perpendicular to c,
  so each center owns the points near that line, and the cells are the bands
  seen in reference-figures/env.png.
- ``euclidean`` labels each point by its nearest center: the true Voronoi partition.

The draws use NumPy's legacy random state seeded by the task seed, in the
original order: k, centers, center labels, then all N points (training first,
then eval, then test). The task seed is separate from the training seed so that
many training seeds can share one environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from optlab.tasks.base import class_counts, split_tensors

K_LOW, K_HIGH = 100, 151  # k = randint(100, 151), as the original
BOUND = 100.0  # points and centers are uniform on [-100, 100]^D
LABEL_CHUNK = 1 << 18  # rows labelled at a time, to bound memory

RULES = ("paper", "euclidean")
SPLITS = ("train", "eval", "test")


@dataclass(frozen=True)
class Environment:
    """One drawn environment: centers, their labels, and the labelled points per split."""

    centers: np.ndarray  # (k, D) float32
    center_labels: np.ndarray  # (k,) int64
    points: dict[str, np.ndarray]  # split -> (n, D) float32
    labels: dict[str, np.ndarray]  # split -> (n,) int64
    classes: int
    name = "voronoi"
    loss = "cross_entropy"
    streams = True  # stream mode draws n_train = Σ B_t points: a fresh batch every step

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    @property
    def k(self) -> int:
        return len(self.centers)

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    def tensors(
        self, split: str, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's points and labels as torch tensors on ``device``."""
        return split_tensors(self.points, self.labels, split, device)

    def arrays(self) -> dict[str, torch.Tensor]:
        """What pictures of predictions need: eval points, labels and the centers with their
        labels; labels as uint8 where they fit (up to 256 classes), else int32."""
        labels = torch.uint8 if self.classes <= 256 else torch.int32
        x, y = self.tensors("eval")
        return {
            "eval_points": x,
            "eval_labels": y.to(labels),
            "centers": torch.from_numpy(self.centers),
            "center_labels": torch.from_numpy(self.center_labels).to(labels),
        }

    def summary(self) -> dict:
        """k, the centers, and per split its size, class counts and majority-class accuracy."""
        out: dict = {
            "k": self.k,
            "dim": self.dim,
            "classes": self.classes,
            "centers": self.centers.tolist(),
            "center_labels": self.center_labels.tolist(),
        }
        return {**out, **class_counts({s: self.labels[s] for s in SPLITS}, self.classes)}


def assign_labels(
    points: np.ndarray, centers: np.ndarray, center_labels: np.ndarray, rule: str
) -> np.ndarray:
    """Label each point by its center under ``rule`` (see the module docstring)."""
    if rule == "paper":
        c_hat = centers / (np.linalg.norm(centers, axis=1, keepdims=True) ** 2)
    elif rule != "euclidean":
        raise ValueError(f"task.rule: {rule!r} is not a rule; valid: {', '.join(RULES)}")
    nearest = np.empty(len(points), dtype=np.int64)
    for lo in range(0, len(points), LABEL_CHUNK):
        x = points[lo : lo + LABEL_CHUNK]
        if rule == "paper":
            score = (x @ c_hat.T - 1.0) ** 2
        else:  # ‖x − c‖² up to the ‖x‖² term, which does not change the argmin
            score = (centers**2).sum(1) - 2.0 * x @ centers.T
        nearest[lo : lo + LABEL_CHUNK] = score.argmin(axis=1)
    return center_labels[nearest].astype(np.int64)


@lru_cache(maxsize=4)
def make_environment(
    dim: int, classes: int, n_train: int, n_eval: int, n_test: int, seed: int, rule: str
) -> Environment:
    """Draw the environment exactly as the original generator did (cached per process)."""
    rng = np.random.RandomState(seed)  # the legacy global state's own algorithm
    k = rng.randint(K_LOW, K_HIGH)
    centers = (2 * rng.rand(k, dim) - 1) * BOUND
    center_labels = rng.randint(classes, size=k)
    n = n_train + n_eval + n_test
    points = (2 * rng.rand(n, dim) - 1) * BOUND
    labels = assign_labels(points, centers, center_labels, rule)  # in float64, as the original
    points = points.astype(np.float32)
    cuts = {
        "train": (0, n_train),
        "eval": (n_train, n_train + n_eval),
        "test": (n_train + n_eval, n),
    }
    return Environment(
        centers=centers.astype(np.float32),
        center_labels=center_labels.astype(np.int64),
        points={s: points[a:b] for s, (a, b) in cuts.items()},
        labels={s: labels[a:b] for s, (a, b) in cuts.items()},
        classes=classes,
    )
