"""Per-tensor figures: one panel per parameter tensor, one colour per condition.

Weight bands (reference-figures/baseline_weights.png) draw each tensor's mean as a line
and shade between its min and max; with several seeds the line is the mean over seeds and
the shade spans every seed's range. The other per-tensor probes (moments, update,
distance, effective_lr, invariance) draw one figure per quantity, the mean over seeds as a
line. Conditions past the tenth repeat the ten colours with dashed, then dotted lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save

COLUMNS = 4
PROBE_SPLITS = ("moments", "update", "distance", "decayed_init", "effective_lr", "invariance")
LINESTYLES = ("-", "--", ":")


def line_style(i: int) -> dict[str, str]:
    """The colour and line style of the ``i``-th condition: ten colours, then dashed, dotted."""
    return {"color": f"C{i % 10}", "linestyle": LINESTYLES[i // 10 % len(LINESTYLES)]}


def tensor_names(record: ExperimentRecord, split: str = "params") -> list[str]:
    """Tensors with ``<tensor>/<quantity>`` metrics in ``split``, by name."""
    names = record.metrics.loc[record.metrics["split"] == split, "name"]
    return list(dict.fromkeys(n.rsplit("/", 1)[0] for n in names))


def quantities(record: ExperimentRecord, split: str) -> list[str]:
    names = record.metrics.loc[record.metrics["split"] == split, "name"]
    return list(dict.fromkeys(n.rsplit("/", 1)[1] for n in names))


def plot_weight_bands(record: ExperimentRecord, path: str | Path) -> Path | None:
    return plot_per_tensor(
        record, "params", "mean", path, "Weight values (shaded between min and max)", ("min", "max")
    )


def plot_per_tensor(
    record: ExperimentRecord,
    split: str,
    quantity: str,
    path: str | Path,
    ylabel: str,
    band: tuple[str, str] | None = None,
    tensors: Sequence[str] | None = None,
    log: bool = False,
) -> Path | None:
    """``<tensor>/<quantity>`` of ``split`` against the step, a panel per tensor (of ``tensors``
    where given); None if absent. Drawn on a log scale where ``log``, or where a positive
    quantity spans more than three decades."""
    names = tensor_names(record, split) if tensors is None else tensors
    tensors = [t for t in names if record.has(split, f"{t}/{quantity}")]
    if not tensors:
        return None
    rows, cols = math.ceil(len(tensors) / COLUMNS), min(COLUMNS, len(tensors))
    fig, axes = plt.subplots(rows, cols, figsize=(8 * cols, 6 * rows), squeeze=False)
    for ax, tensor in zip(axes.flat, tensors, strict=False):
        line = record.curves(split, f"{tensor}/{quantity}")
        lo, hi = (record.curves(split, f"{tensor}/{b}") for b in band) if band else (None, None)
        for i, condition in enumerate(record.conditions):
            if condition not in line.columns.get_level_values("condition"):
                continue
            style = line_style(i)
            color = style["color"]
            mean = line[condition].mean(axis=1)
            ax.plot(mean.index, mean, label=condition, linewidth=1.2, **style)
            if band and all(condition in b.columns.get_level_values("condition") for b in (lo, hi)):
                low, high = lo[condition].min(axis=1), hi[condition].max(axis=1)
                ax.fill_between(mean.index, low, high, color=color, alpha=0.12)
        values = line.to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if log or len(values) and values.min() > 0 and values.max() / values.min() > 1e3:
            ax.set_yscale("log")
        ax.set_title(tensor)
        ax.set_xlabel("Training step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tensors) :]:
        ax.axis("off")
    what = quantity if quantity == split else f"{split} {quantity}"
    fig.suptitle(record.name if band else f"{record.name}: {what}")
    fig.tight_layout()
    return save(fig, path)
