"""The environment as a picture: points coloured by class, centers on top (reference-figures/env.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optlab.tasks.voronoi import Environment
from optlab.viz.figure import plt, save

MAX_POINTS = 100_000


def plot_points(
    points: np.ndarray, labels: np.ndarray, centers: np.ndarray, path: str | Path, title: str
) -> Path:
    """Scatter up to 100k points by class (first two dimensions) with the centers as crosses."""
    x, y = points[:MAX_POINTS], labels[:MAX_POINTS]
    fig, ax = plt.subplots(figsize=(10, 8))
    for c in np.unique(y):
        ax.scatter(*x[y == c, :2].T, s=4, label=str(c), rasterized=True)
    ax.scatter(*centers[:, :2].T, s=18, c="black", marker="x", label="centers")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=3)
    ax.set_aspect("equal")
    fig.tight_layout()
    return save(fig, path, dpi=100)


def plot_environment(env: Environment, path: str | Path, split: str = "train") -> Path:
    """The environment's ``split`` points by class with its centers."""
    n = min(len(env.points[split]), MAX_POINTS)
    title = f"Voronoi task: k = {env.k}, {env.classes} classes, {n:,} {split} points"
    return plot_points(env.points[split], env.labels[split], env.centers, path, title)


__all__ = ["plot_environment", "plot_points"]
