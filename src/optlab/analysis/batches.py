"""Runs whose batches differ, compared at equal samples seen and at equal steps (issue 16).

A run's samples seen after step t are S_t = Σ_{s≤t} B_s: recorded (``batch/samples``) where
its batch varies (a schedule, a controller), else t·B. Per cell (case and grid point, each
keeping its tuned value as ``cells.cells`` does), over seeds:

- ``batch`` and ``samples``: its batch and samples seen after the last step;
- ``test_accuracy``: after the last step (the test split is read only there), so at equal
  steps where the experiment's runs take the same steps (``adaptive_batch``), at equal
  samples where they take steps × batch the same (``sign_large_batch``);
- ``eval_accuracy_at_budget``: eval accuracy at S*, the fewest samples any run of the same
  grid point saw in all, linear in S between evaluations, and ``steps_at_budget``, the step
  it reached S* at: the comparison at equal samples seen;
- ``snr``: where the ``grad_stats`` probe ran, the gradient's signal-to-noise ratio at the
  run's own batch at its last evaluation, snr_B = ‖ḡ‖²/(tr Σ/B) = B/B_simple (McCandlish et
  al. 2018; the probe's own ``snr`` is that of its 256 examples).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optlab.analysis.cells import axes, tuned_runs
from optlab.analysis.stats import compare, summarize
from optlab.store import Store

BATCH, GRAD_STATS = "batch", "grad_stats"


def varies_batch(runs: pd.DataFrame) -> bool:
    """Whether an experiment's runs differ in batch size or change it while training."""
    if runs.empty:
        return False
    controlled = runs.get("train.batch_controller", pd.Series(dtype=object)).fillna("none")
    scheduled = runs["train.batch_milestones"].map(
        lambda m: bool(m) if isinstance(m, list) else False
    )
    return runs["train.batch_size"].nunique() > 1 or (controlled != "none").any() or scheduled.any()


def samples_seen(metrics: pd.DataFrame, batch_size: int) -> pd.Series:
    """step → S_t of one run from its long-form metrics: ``batch/samples`` where recorded,
    else t·B at each step the run was evaluated."""
    own = metrics[(metrics["split"] == BATCH) & (metrics["name"] == "samples")]
    if len(own):
        return own.set_index("step")["value"]
    steps = np.sort(metrics.loc[metrics["split"] == "eval", "step"].unique())
    return pd.Series(steps * float(batch_size), index=steps)


def _final_batch(metrics: pd.DataFrame, batch_size: int) -> float:
    own = metrics[(metrics["split"] == BATCH) & (metrics["name"] == "batch_size")]
    return float(own.sort_values("step")["value"].iloc[-1]) if len(own) else float(batch_size)


def _per_run(metrics: pd.DataFrame, batch_size: int) -> dict[str, float]:
    """One run's batch, samples seen, its eval-accuracy curve against samples, and snr."""
    samples = samples_seen(metrics, batch_size)
    acc = metrics[(metrics["split"] == "eval") & (metrics["name"] == "accuracy")]
    acc = acc.set_index("step")["value"]
    steps = acc.index.intersection(samples.index)
    batch = _final_batch(metrics, batch_size)
    noise = metrics[(metrics["split"] == GRAD_STATS) & (metrics["name"] == "noise_scale")]
    snr = batch / noise.sort_values("step")["value"].iloc[-1] if len(noise) else np.nan
    return {
        "batch": batch,
        "samples": float(samples.iloc[-1]),
        "curve": (samples[steps].to_numpy(float), acc[steps].to_numpy(float), steps.to_numpy()),
        "snr": float(snr),
    }


def budget_table(store: Store, experiment: str) -> pd.DataFrame:
    """Per cell of ``experiment``: its final batch and samples seen, test accuracy after the
    last step, and eval accuracy at the grid point's common budget S* (module docstring),
    means over seeds with 95% t intervals for the accuracies."""
    spec = store.experiments().get(experiment, {})
    grid_keys, tune_keys = axes(spec)
    runs = tuned_runs(store, experiment)
    if runs.empty:
        return pd.DataFrame()
    splits = ("eval", BATCH, GRAD_STATS)
    metrics = store.metrics(list(runs["id"]), split=splits)
    per_run = {
        row["id"]: _per_run(metrics[metrics["run_id"] == row["id"]], row["train.batch_size"])
        for _, row in runs.iterrows()
    }
    runs = runs.assign(
        **{k: [per_run[i][k] for i in runs["id"]] for k in ("batch", "samples", "snr")}
    )
    point = (
        runs[grid_keys].astype(str).agg("|".join, axis=1)
        if grid_keys
        else pd.Series("", index=runs.index)
    )
    runs = runs.assign(budget=runs.groupby(point)["samples"].transform("min"))
    reached = [
        _at_budget(per_run[i]["curve"], b) for i, b in zip(runs["id"], runs["budget"], strict=True)
    ]
    runs = runs.assign(
        eval_accuracy_at_budget=[a for a, _ in reached], steps_at_budget=[s for _, s in reached]
    )
    rows = []
    for cell, group in runs.groupby(["case", *grid_keys], sort=False, dropna=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        row = dict(zip(["case", *grid_keys], cell, strict=True))
        row.update({k: group[k].iloc[0] for k in tune_keys})
        row["seeds"] = len(group)
        for key in ("batch", "samples", "budget", "steps_at_budget", "snr"):
            row[key] = float(group[key].mean())
        row["steps"] = int(group["train.steps"].iloc[0])
        for metric in ("test_accuracy", "eval_accuracy_at_budget"):
            s = summarize(group[metric].to_numpy(float))
            row.update({metric: s.mean, f"{metric}_lo": s.lo, f"{metric}_hi": s.hi})
        row["test_accuracy_by_seed"] = group.set_index("train.seed")["test_accuracy"].to_dict()
        rows.append(row)
    return pd.DataFrame(rows)


def _at_budget(curve: tuple[np.ndarray, np.ndarray, np.ndarray], budget: float) -> tuple:
    """Eval accuracy at S* samples, linear in S between evaluations, and the step then."""
    samples, accuracy, steps = curve
    return float(np.interp(budget, samples, accuracy)), float(np.interp(budget, samples, steps))


def by_rule(table: pd.DataFrame, reference: str = "adam") -> pd.DataFrame:
    """``budget_table`` of an experiment whose grid is ``optimizer.name`` and whose cases are
    batch sizes, one row per batch: each rule's test accuracy and snr, and each other rule's
    gap to ``reference``, its accuracy minus the reference's, paired over the seeds both
    have (``stats.compare``), with its 95% t interval (``… lo``, ``… hi``)."""
    out = []
    for batch, group in table.groupby("batch", sort=True):
        cells = group.set_index("optimizer.name")
        row: dict = {"batch": batch}
        for rule, cell in cells.iterrows():
            row[f"{rule} acc"] = cell["test_accuracy"]
        for rule, cell in cells.iterrows():
            if rule == reference or reference not in cells.index:
                continue
            e = compare(
                pd.Series(cell["test_accuracy_by_seed"]),
                pd.Series(cells.loc[reference, "test_accuracy_by_seed"]),
            )
            gap = f"{rule} − {reference}"
            row.update({gap: e.mean, f"{gap} lo": e.lo, f"{gap} hi": e.hi})
        for rule, cell in cells.iterrows():
            row[f"{rule} snr"] = cell["snr"]
        out.append(row)
    return pd.DataFrame(out)
