"""Which solution each optimizer finds on the memorize-or-generalize toy (the 2023 essay):
the memorizers' mean and the generalizer weight against the step on a log scale, one colour
per condition (mean over seeds, shaded from the lowest to the highest seed), over the
solutions the essay names: the minimum-L2-norm one, memorizers 1/(n+1) and generalizer
n/(n+1) (where gradient descent from zero stays), and the L∞ one, ½ and ½ (Adam's)."""

from __future__ import annotations

from pathlib import Path

from optlab.analysis.solutions import l_inf, min_norm
from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save

PANELS = {"memorizer_mean": "Memorizers' mean weight", "generalizer": "Generalizer weight"}
SAMPLES = "task.samples"  # n: the toy has n memorizers and one generalizer


def has_mg_scalars(record: ExperimentRecord) -> bool:
    names = set(record.metrics.loc[record.metrics["split"] == "scalars", "name"])
    return set(PANELS) <= names


def plot_memorize_generalize(record: ExperimentRecord, path: str | Path) -> Path | None:
    """``memorize_generalize_figure`` written to ``path``; None if the runs lack its scalars."""
    fig = memorize_generalize_figure(record)
    return None if fig is None else save(fig, path)


def memorize_generalize_figure(record: ExperimentRecord) -> plt.Figure | None:
    """Two panels, memorizers' mean and generalizer over steps ≥ 1 (log scale) with the
    reference solutions as labelled horizontal lines; None if the runs lack these scalars."""
    if not has_mg_scalars(record):
        return None
    shown = record.runs[record.runs["condition"].isin(record.shown)]
    samples = sorted(int(n) for n in shown[SAMPLES].dropna().unique()) if SAMPLES in shown else []
    fig, axes = plt.subplots(1, 2, figsize=(16, 6))
    for ax, (name, title) in zip(axes, PANELS.items(), strict=True):
        wide = record.curves("scalars", name)
        wide = wide[wide.index > 0]  # a log axis has no step 0 (w = 0 there)
        for i, condition in enumerate(record.conditions):
            if condition not in wide.columns.get_level_values("condition"):
                continue
            seeds = wide[condition]
            k = seeds.shape[1]
            label = condition if k == 1 else f"{condition} ({k} seeds)"
            mean = seeds.mean(axis=1)
            # optimizers that find the same path coincide: wider lines under narrower ones
            width = 3.0 - 1.8 * i / max(1, len(record.conditions) - 1)
            ax.plot(mean.index, mean, color=f"C{i % 10}", label=label, linewidth=width)
            if k > 1:
                low, high = seeds.min(axis=1), seeds.max(axis=1)
                ax.fill_between(mean.index, low, high, color=f"C{i % 10}", alpha=0.2, lw=0)
        panel = list(PANELS).index(name)  # (m̄, g): the fits' first or second value
        for n in samples:
            fraction = f"1/{n + 1}" if name == "memorizer_mean" else f"{n}/{n + 1}"
            label = f"min-L2 norm (n = {n}): {fraction}"
            ax.axhline(min_norm(n)[panel], color="0.2", ls="--", lw=1, zorder=3, label=label)
        if samples:  # ½ whatever n
            ax.axhline(
                l_inf(samples[0])[panel],
                color="0.2",
                ls=":",
                lw=1.2,
                zorder=3,
                label="L∞ (Adam): 1/2",
            )
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("Training step (log scale)")
        ax.set_ylabel(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"{record.name}: memorize or generalize")
    fig.tight_layout()
    return fig
