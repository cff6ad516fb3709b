"""Animations from the store: the paper's benchmark GIF (the decision map over training, the
scalar panels beside it, step and accuracy in the title) and learned centers moving."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from PIL import Image

from optlab.store import Store
from optlab.viz.figure import DPI, plt

MAX_FRAMES = 40
FPS = 5
PALETTE = 32  # colours in a GIF
PANEL_SPLITS = ("scalars", "outputs")  # beside the map, after eval loss and accuracy


def frame_steps(steps: list[int], limit: int = MAX_FRAMES) -> list[int]:
    """At most ``limit`` steps, evenly spread, always keeping the first and the last."""
    if len(steps) <= limit:
        return steps
    picks = np.linspace(0, len(steps) - 1, limit).round().astype(int)
    return [steps[i] for i in sorted(set(picks))]


def _panels(metrics: pd.DataFrame) -> dict[str, pd.Series]:
    """Eval loss and accuracy, then the model's scalars and output statistics, by step."""
    out = {}
    for split, names in (("eval", ["loss", "accuracy"]), *((s, None) for s in PANEL_SPLITS)):
        rows = metrics[metrics["split"] == split]
        for name in names or list(dict.fromkeys(rows["name"])):
            series = rows[rows["name"] == name].set_index("step")["value"].sort_index()
            if len(series):
                out[f"{split} {name}" if split == "eval" else name] = series
    return out


def animate_decision_map(store: Store, run_id: str, path: str | Path, title: str) -> Path | None:
    """Eval points coloured by the predicted class at each recorded step (left), the run's
    scalar curves up to that step (right); None if the run recorded no predictions."""
    predictions = store.array(run_id, "predictions")
    points = store.array(run_id, "task/eval_points").get(0)
    if not predictions or points is None:
        return None
    labels = store.array(run_id, "task/eval_labels")[0]
    steps = frame_steps(sorted(predictions))
    panels = _panels(store.metrics([run_id], split=("eval", *PANEL_SPLITS)))
    cols = 2 if len(panels) > 4 else 1
    rows = max(1, math.ceil(len(panels) / cols))
    fig = plt.figure(figsize=(8 + 4 * cols, max(7, 1.6 * rows)))
    grid = fig.add_gridspec(rows, 2 + cols, width_ratios=[1.6, 0.5] + [1.0] * cols)
    ax_map = fig.add_subplot(grid[:, 0])
    classes = max(int(labels.max()), *(int(p.max()) for p in predictions.values())) + 1
    cmap = ListedColormap([f"C{c % 10}" for c in range(classes)])
    scatter = ax_map.scatter(
        *points[:, :2].T, c=predictions[steps[0]], cmap=cmap, vmin=0, vmax=classes - 1, s=4
    )
    ax_map.set_aspect("equal")
    ax_map.set_xlabel("x₀")
    ax_map.set_ylabel("x₁")
    moving = []
    for i, (name, series) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[i // cols, 2 + i % cols])
        ax.plot(series.index, series.values, color="0.85", linewidth=1)
        (line,) = ax.plot([], [], color="C0", linewidth=1.2)
        (dot,) = ax.plot([], [], "o", color="black", markersize=4)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        moving.append((series, line, dot))

    def draw(step: int) -> None:
        scatter.set_array(predictions[step].astype(float))
        accuracy = float((predictions[step] == labels).mean())
        ax_map.set_title(f"{title}\nstep {step:,}   eval accuracy {accuracy:.2%}")
        for series, line, dot in moving:
            upto = series[series.index <= step]
            line.set_data(upto.index, upto.values)
            dot.set_data(upto.index[-1:], upto.values[-1:])

    ax_map.set_title(f"{title}\nstep 0   eval accuracy 0%")  # room for the title in the layout
    fig.tight_layout()
    animated = [scatter, ax_map.title, *(a for _, line, dot in moving for a in (line, dot))]
    return _write(fig, draw, steps, path, animated)


def animate_centers(store: Store, run_id: str, path: str | Path, title: str) -> Path | None:
    """Learned centers (``snapshot/centers``) over the eval points coloured by their true class,
    the environment's centers as crosses; None if the run has no center snapshots."""
    centers = store.array(run_id, "snapshot/centers")
    points = store.array(run_id, "task/eval_points").get(0)
    if not centers or points is None:
        return None
    labels = store.array(run_id, "task/eval_labels")[0]
    truth = store.array(run_id, "task/centers")[0]
    steps = frame_steps(sorted(centers))
    fig, ax = plt.subplots(figsize=(8, 8))
    for c in np.unique(labels):
        ax.scatter(*points[labels == c, :2].T, s=3, color=f"C{c % 10}", alpha=0.25)
    ax.scatter(*truth[:, :2].T, s=30, c="black", marker="x", label="environment's centers")
    learned = ax.scatter(*centers[steps[0]][:, :2].T, s=6, c="C3", label="learned centers")
    bound = 1.5 * float(np.abs(points).max())
    ax.set_xlim(-bound, bound)
    ax.set_ylim(-bound, bound)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")

    def draw(step: int) -> None:
        learned.set_offsets(centers[step][:, :2])
        ax.set_title(f"{title}\nstep {step:,}")

    ax.set_title(f"{title}\nstep 0")
    fig.tight_layout()
    return _write(fig, draw, steps, path, [learned, ax.title])


def _write(fig, draw, steps: list[int], path: str | Path, animated: list) -> Path:
    """Draw the still parts once, then per frame only the ``animated`` artists over them
    (blitting on the Agg canvas), and write the frames as a looping GIF."""
    fig.set_dpi(DPI)
    for artist in animated:
        artist.set_animated(True)
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    frames = []
    for step in steps:
        fig.canvas.restore_region(background)
        draw(step)
        for artist in animated:
            fig.draw_artist(artist)
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
    plt.close(fig)
    # one palette for every frame (taken from the first, middle and last), so that the GIF
    # stores each frame as its difference from the one before
    sample = [frames[0], frames[len(frames) // 2], frames[-1]]
    strip = Image.new("RGB", (frames[0].width, frames[0].height * len(sample)))
    for i, frame in enumerate(sample):
        strip.paste(frame, (0, i * frame.height))
    palette = strip.quantize(colors=PALETTE, dither=Image.Dither.NONE)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000 // FPS, loop=0)
    return path
