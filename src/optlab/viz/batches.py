"""Figures of runs whose batches differ (issue 16), drawn from the record alone.

``plot_samples``: eval accuracy against samples seen S_t = Σ_{s≤t} B_t (log scale) and the
batch over steps, per condition, a column per model: where the curves cross at equal samples
and how a controller or schedule grew the batch. ``plot_rules_by_batch``: test accuracy
against the batch per rule at equal samples seen, and the gradient's signal-to-noise ratio at
that batch, snr_B = B/B_simple, from the grad_stats probe (``analysis.batches``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optlab.analysis.batches import BATCH, GRAD_STATS
from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save
from optlab.viz.weights import line_style


def _per_step(record: ExperimentRecord, name: str) -> pd.DataFrame:
    """Steps × runs of ``batch/<name>`` (``batch_size`` or ``samples``) at each evaluated
    step: recorded where the batch varies, else B or t·B of the run's fixed batch."""
    steps = record.curves("eval", "accuracy").droplevel("condition", axis=1).index
    ids = record.runs["id"]
    batch = record.runs["train.batch_size"].to_numpy(float)
    scale = steps.to_numpy(float) if name == "samples" else np.ones(len(steps))
    out = pd.DataFrame(np.outer(scale, batch), index=steps, columns=ids)
    out = out.where(record.curves("eval", "accuracy").droplevel("condition", axis=1).notna())
    m = record.metrics
    own = m[(m["split"] == BATCH) & (m["name"] == name)]
    if len(own):
        recorded = own.pivot(index="step", columns="run_id", values="value")
        out.update(recorded.reindex(index=out.index))
    return out


def _varies(record: ExperimentRecord) -> bool:
    m = record.metrics
    return record.runs["train.batch_size"].nunique() > 1 or bool((m["split"] == BATCH).any())


def plot_samples(record: ExperimentRecord, path: str | Path) -> Path | None:
    """Eval accuracy against samples seen (top) and the batch against the step (bottom), per
    shown condition, the mean over seeds; a column per model. None where no run's batch
    differs from another's or changes, or where the rules differ (``plot_rules_by_batch``)."""
    if not _varies(record) or record.runs["optimizer.name"].nunique() > 1:
        return None
    accuracy = record.curves("eval", "accuracy").droplevel("condition", axis=1)
    samples, batch = _per_step(record, "samples"), _per_step(record, "batch_size")
    runs = record.runs.set_index("id")
    models = list(dict.fromkeys(runs["model.name"]))
    cases = list(dict.fromkeys(runs["case"]))  # a case's colour is the same in every column
    fig, axes = plt.subplots(2, len(models), figsize=(7 * len(models), 9), squeeze=False)
    for col, model in enumerate(models):
        top, bottom = axes[0, col], axes[1, col]
        for condition in record.conditions:
            chosen = (runs["condition"] == condition) & (runs["model.name"] == model)
            ids = list(runs.index[chosen])
            if not ids:
                continue
            style = line_style(cases.index(runs.loc[ids[0], "case"]))
            top.plot(
                samples[ids].mean(axis=1), accuracy[ids].mean(axis=1), label=condition, **style
            )
            bottom.plot(batch.index, batch[ids].mean(axis=1), **style)
        top.set_xscale("log")
        top.set_title(f"model {model}")
        top.set_xlabel("Samples seen")
        top.set_ylabel("Eval accuracy (mean over seeds)")
        bottom.set_yscale("log", base=2)
        bottom.set_xlabel("Training step")
        bottom.set_ylabel("Batch size")
        top.legend(fontsize=8)
    fig.suptitle(f"{record.name}: eval accuracy at equal samples seen, and the batch over training")
    fig.tight_layout()
    return save(fig, path)


def plot_rules_by_batch(record: ExperimentRecord, path: str | Path) -> Path | None:
    """Test accuracy (top) and snr at the batch (bottom, log) against the batch (log₂), one
    line per optimizer, the mean over seeds of each (rule, batch)'s shown runs. None unless
    the experiment's conditions differ in optimizer and batch and grad_stats was recorded."""
    runs = record.runs[record.runs["condition"].isin(record.shown)]
    m = record.metrics
    if runs["optimizer.name"].nunique() < 2 or runs["train.batch_size"].nunique() < 2:
        return None
    test = m[(m["split"] == "test") & (m["name"] == "accuracy")].set_index("run_id")["value"]
    noise = m[(m["split"] == GRAD_STATS) & (m["name"] == "noise_scale")]
    if noise.empty:
        return None
    last = noise.sort_values("step").groupby("run_id")["value"].last()
    table = runs.assign(
        test=runs["id"].map(test),
        snr=runs["train.batch_size"].astype(float) / runs["id"].map(last),
    )
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 9), sharex=True)
    for i, (rule, group) in enumerate(table.groupby("optimizer.name", sort=False)):
        mean = group.groupby("train.batch_size")[["test", "snr"]].mean()
        top.plot(mean.index, mean["test"], marker="o", label=rule, **line_style(i))
        bottom.plot(mean.index, mean["snr"], marker="o", **line_style(i))
    top.set_xscale("log", base=2)
    top.set_ylabel("Test accuracy (mean over seeds)")
    top.legend()
    bottom.set_yscale("log")
    bottom.axhline(1, color="k", lw=1, ls=":")
    bottom.set_xlabel("Batch size (equal samples seen: fewer steps at larger B)")
    bottom.set_ylabel("snr at B = ‖ḡ‖²/(tr Σ/B), last evaluation")
    fig.suptitle(f"{record.name}: test accuracy and gradient snr by rule and batch")
    fig.tight_layout()
    return save(fig, path)
