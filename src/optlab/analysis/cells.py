"""From runs to cells: final metrics per run, learning-rate tuning, summaries over seeds.

A cell is an experiment's case and grid point; its runs differ in the seed and in the
tuning axes. Tuning keeps, per cell, the tuning value whose runs have the lowest mean
final eval loss (a diverged run counts as infinite loss), as the paper tuned its
learning rate over {2e-3, 3e-3, 5e-3}; the cell is then reported on the test split,
which played no part in the choice.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.analysis.stats import MIN_SEEDS, Summary, compare, holm, summarize
from optlab.store import Store

FINALS = ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy")


def hashable(value):
    """A config value as a groupby key (lists, such as betas, as tuples)."""
    return tuple(value) if isinstance(value, list) else value


def run_table(store: Store, experiment: str | None = None) -> pd.DataFrame:
    """One row per (experiment, run): labels, config columns and final metrics."""
    runs = store.runs(experiment)
    if runs.empty:
        return runs
    runs = runs[runs["status"].isin(("complete", "diverged"))].copy()
    finals = store.final_metrics()
    for key in FINALS:
        runs[key] = [finals.get(i, {}).get(key, math.nan) for i in runs["id"]]
    return runs.apply(lambda col: col.map(hashable)) if len(runs) else runs


def axes(spec: dict) -> tuple[list[str], list[str]]:
    """(grid keys, tuning keys) of an experiment spec as stored (any profile's tuning keys)."""
    tune = set(spec.get("tune", {}))
    for profile in spec.get("profiles", {}).values():
        tune |= set(profile.get("tune", {}))
    return list(spec.get("grid", {})), sorted(tune)


def tune(runs: pd.DataFrame, cell_keys: list[str], tune_keys: list[str]) -> pd.DataFrame:
    """The runs of each cell's best tuning value (lowest mean final eval loss)."""
    if not tune_keys or runs.empty:
        return runs
    loss = runs["eval_loss"].where(np.isfinite(runs["eval_loss"]), np.inf)
    score = loss.groupby([runs[k] for k in cell_keys + tune_keys], dropna=False).mean()
    best = score.groupby(level=list(range(len(cell_keys))), dropna=False).idxmin()
    chosen = set(best.tolist())
    key = runs[cell_keys + tune_keys].apply(tuple, axis=1)
    return runs[key.isin(chosen)]


def cells(store: Store, experiment: str) -> pd.DataFrame:
    """Per cell of an experiment: its tuned value, seeds, divergences and test figures (mean
    and 95% Student-t interval); with a ``baseline`` case, each other cell's test-accuracy
    difference from the baseline cell at the same grid point, paired by training seed where
    the cells share at least three seeds (else Welch's; ``method`` says which), its t
    interval, p and the Holm-adjusted p over the experiment's comparisons (their number in
    ``comparisons``); no comparison from fewer than three seeds."""
    spec = store.experiments().get(experiment, {})
    grid_keys, tune_keys = axes(spec)
    picked = _tuned(store, experiment, spec)
    if picked.empty:
        return pd.DataFrame()
    cell_keys = ["case", *grid_keys]
    rows = []
    for cell, group in picked.groupby(cell_keys, sort=False, dropna=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        row = dict(zip(cell_keys, cell, strict=True))
        row.update({k: group[k].iloc[0] for k in tune_keys})
        row["seeds"] = len(group)
        row["diverged"] = int((group["status"] == "diverged").sum())
        for metric in ("test_accuracy", "test_loss"):
            s = summarize(group[metric].to_numpy())
            row.update({metric: s.mean, f"{metric}_lo": s.lo, f"{metric}_hi": s.hi})
        rows.append(row)
    table = pd.DataFrame(rows)
    if spec.get("baseline") is not None:
        table = _against_baseline(table, picked, spec["baseline"], grid_keys)
    return table


def _against_baseline(
    table: pd.DataFrame, runs: pd.DataFrame, baseline: str, grid_keys: list[str]
) -> pd.DataFrame:
    """Add delta, delta_lo, delta_hi, p, method, p_holm and comparisons (test accuracy vs
    baseline)."""
    cols = {k: [math.nan] * len(table) for k in ("delta", "delta_lo", "delta_hi", "p")}
    cols["method"] = [None] * len(table)
    for i, row in table.iterrows():
        if row["case"] == baseline:
            continue
        same = np.ones(len(runs), dtype=bool)
        for k in grid_keys:
            same &= (runs[k] == row[k]).to_numpy()
        a, b = (
            runs[same & (runs["case"] == case).to_numpy()].set_index("train.seed")["test_accuracy"]
            for case in (row["case"], baseline)
        )
        e = compare(a, b)
        if e.n < MIN_SEEDS:
            continue
        cols["delta"][i], cols["delta_lo"][i], cols["delta_hi"][i] = e.mean, e.lo, e.hi
        cols["p"][i], cols["method"][i] = e.p, e.method
    table = table.assign(**cols)
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"].tolist())
    table["comparisons"] = int(tested.sum())
    return table


def tuned_runs(store: Store, experiment: str) -> pd.DataFrame:
    """The runs each cell of an experiment keeps after tuning, with their final metrics."""
    return _tuned(store, experiment, store.experiments().get(experiment, {}))


def _tuned(store: Store, experiment: str, spec: dict) -> pd.DataFrame:
    grid_keys, tune_keys = axes(spec)
    return tune(run_table(store, experiment), ["case", *grid_keys], tune_keys)


__all__ = ["Summary", "axes", "cells", "run_table", "tune", "tuned_runs"]
