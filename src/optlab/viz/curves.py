"""Eval curves per condition (reference-figures/weight_decay_stats.png): one colour per
condition, the mean over seeds as a line and the range between the lowest and the highest
seed shaded where there are several seeds. A panel per eval metric the runs recorded: the
loss (in bits per character where the task reports it) and the accuracy where there is one."""

from __future__ import annotations

from pathlib import Path

from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save

LABELS = {"bits_per_char": "bits per character"}


def eval_panels(record: ExperimentRecord) -> list[str]:
    """The eval metrics to draw: ``bits_per_char`` instead of ``loss`` where recorded, then
    ``accuracy`` where recorded; empty without evals."""
    names = set(record.metrics.loc[record.metrics["split"] == "eval", "name"])
    loss = "bits_per_char" if "bits_per_char" in names else "loss"
    return [n for n in (loss, "accuracy") if n in names]


def plot_eval_curves(record: ExperimentRecord, path: str | Path) -> Path | None:
    """A panel per ``eval_panels`` metric against the training step; None without evals."""
    panels = eval_panels(record)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 6), squeeze=False)
    for ax, name in zip(axes.flat, panels, strict=True):
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
        ax.set_ylabel(f"Eval {LABELS.get(name, name)}")
        ax.legend(fontsize=8)
    fig.suptitle(record.name)
    fig.tight_layout()
    return save(fig, path)
