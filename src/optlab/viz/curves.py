"""Eval loss and accuracy per condition (reference-figures/weight_decay_stats.png): one colour
per condition, the mean over seeds as a line and the range between the lowest and the
highest seed shaded where there are several seeds."""

from __future__ import annotations

from pathlib import Path

from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save


def plot_eval_curves(record: ExperimentRecord, path: str | Path) -> Path | None:
    """Two panels, eval loss and eval accuracy against the training step; None without evals."""
    if not ((record.metrics["split"] == "eval").any()):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(16, 6))
    for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
        wide = record.curves("eval", name)
        for i, condition in enumerate(record.conditions):
            if condition not in wide.columns.get_level_values("condition"):
                continue
            seeds = wide[condition]
            n = seeds.shape[1]
            label = condition if n == 1 else f"{condition} ({n} seeds)"
            mean = seeds.mean(axis=1)
            ax.plot(mean.index, mean, color=f"C{i % 10}", label=label, linewidth=1.2)
            if n > 1:
                ax.fill_between(
                    mean.index,
                    seeds.min(axis=1),
                    seeds.max(axis=1),
                    color=f"C{i % 10}",
                    alpha=0.2,
                    lw=0,
                )
        ax.set_xlabel("Training step")
        ax.set_ylabel(f"Eval {name}")
        ax.legend(fontsize=8)
    fig.suptitle(record.name)
    fig.tight_layout()
    return save(fig, path)
