"""The environment as a picture: points coloured by class, centers on top (reference-figures/env.png)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optlab.tasks.voronoi import Environment  # noqa: E402

MAX_POINTS = 100_000


def plot_environment(env: Environment, path: str | Path, split: str = "train") -> Path:
    """Scatter up to 100k points of ``split`` by class (first two dimensions) with the centers."""
    x, y = env.points[split][:MAX_POINTS], env.labels[split][:MAX_POINTS]
    fig, ax = plt.subplots(figsize=(10, 8))
    for c in range(env.classes):
        ax.scatter(*x[y == c, :2].T, s=4, label=str(c), rasterized=True)
    ax.scatter(*env.centers[:, :2].T, s=18, c="black", marker="x", label="centers")
    ax.set_title(f"Voronoi task: k = {env.k}, {env.classes} classes, {len(x):,} {split} points")
    ax.legend(loc="upper right", markerscale=3)
    ax.set_aspect("equal")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["plot_environment"]
