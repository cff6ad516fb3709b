"""Weight bands (reference-figures/baseline_weights.png): one panel per parameter tensor,
its mean as a line and the range between its min and max shaded, one colour per condition.
With several seeds the line is the mean over seeds and the shade spans every seed's range."""

from __future__ import annotations

import math
from pathlib import Path

from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save

COLUMNS = 4


def tensor_names(record: ExperimentRecord) -> list[str]:
    """Parameter tensors with statistics in the record (split ``params``), by name."""
    names = record.metrics.loc[record.metrics["split"] == "params", "name"]
    return list(dict.fromkeys(n.rsplit("/", 1)[0] for n in names))


def plot_weight_bands(record: ExperimentRecord, path: str | Path) -> Path | None:
    tensors = tensor_names(record)
    if not tensors:
        return None
    rows = math.ceil(len(tensors) / COLUMNS)
    cols = min(COLUMNS, len(tensors))
    fig, axes = plt.subplots(rows, cols, figsize=(8 * cols, 6 * rows), squeeze=False)
    for ax, tensor in zip(axes.flat, tensors, strict=False):
        mean, lo, hi = (record.curves("params", f"{tensor}/{s}") for s in ("mean", "min", "max"))
        for i, condition in enumerate(record.conditions):
            if condition not in mean.columns.get_level_values("condition"):
                continue
            color = f"C{i % 10}"
            line = mean[condition].mean(axis=1)
            ax.plot(line.index, line, color=color, label=condition, linewidth=1.2)
            ax.fill_between(
                line.index,
                lo[condition].min(axis=1),
                hi[condition].max(axis=1),
                color=color,
                alpha=0.12,
            )
        ax.set_title(tensor)
        ax.set_xlabel("Training step")
        ax.set_ylabel("Weight values (shaded between min and max)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tensors) :]:
        ax.axis("off")
    fig.suptitle(record.name)
    fig.tight_layout()
    return save(fig, path)
