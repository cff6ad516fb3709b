"""Does kl_adam fall toward 0, stay, or grow? The 2025 thesis notepad's question, per cell.

The notepad asks whether the Gaussian of Adam's moments, N(m̂, diag(v̂ − m̂²)), approaches
the minibatch gradient's, N(ḡ, diag(Σ/B)): "whether the divergence remains the same,
approaches zero, or something else". Per run, the least-squares slope of ln KL on the step
over the second half of training (the records at steps ≥ half the last), times the half's
length: the fitted ln(KL_end/KL_mid), a multiplicative change that reads the same at any
scale of the KL. Over a cell's seeds, its mean and Student-t interval (``stats.one_sample``):

- **falls**: the interval lies below 0; **grows**: above 0;
- **stays**: it straddles 0 and lies within ±ln 1.5 (the KL changes by less than 1.5× over the
  half either way); **inconclusive**: it straddles 0 but is wider than that.

Beside it, ``v_hat_tracks`` (Balles and Hennig 2018) over training: each run's median over its
records in the first and in the second half, averaged over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optlab.analysis.cells import axes, hashable
from optlab.analysis.stats import MIN_SEEDS, Estimate, linear_fit, one_sample
from optlab.store import Store

SPLIT = "grad_stats"
STAYS_WITHIN = math.log(1.5)  # |fitted ln change| over the second half that counts as staying


def second_half_change(steps: np.ndarray, values: np.ndarray) -> float:
    """The fitted ln(KL) change over the second half: slope of ln(value) on step over the
    records at steps ≥ half the last, times (last − half). NaN with fewer than 3 finite
    positive records there."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    half, last = steps.max() / 2, steps.max()
    keep = (steps >= half) & np.isfinite(values) & (values > 0)
    if keep.sum() < 3:
        return math.nan
    slope = linear_fit(steps[keep], np.log(values[keep]))[0]
    return slope * (last - half)


def verdict(e: Estimate) -> str:
    """falls / grows / stays / inconclusive from the interval of the mean change (see above)."""
    if e.n < MIN_SEEDS or math.isnan(e.lo):
        return f"too few seeds ({e.n})"
    if e.hi < 0:
        return "falls"
    if e.lo > 0:
        return "grows"
    if -STAYS_WITHIN <= e.lo and e.hi <= STAYS_WITHIN:
        return "stays"
    return "inconclusive"


def _halves(steps: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Medians of the records (after step 0) in the first and the second half."""
    half = steps.max() / 2
    first, second = values[(steps > 0) & (steps < half)], values[steps >= half]
    return float(np.median(first)) if len(first) else math.nan, float(np.median(second))


def trends(store: Store, experiment: str, metric: str = "kl_adam") -> pd.DataFrame:
    """Per cell (case and grid point) of ``experiment``: the seeds, the mean fitted ln change
    of ``metric`` over the second half with its 95% interval, the verdict, the metric's
    second-half median, and v_hat_tracks' first- and second-half medians (each a mean over
    seeds). Empty where nothing recorded it."""
    runs = store.runs(experiment)
    if runs.empty:
        return pd.DataFrame()
    runs = runs[runs["status"] == "complete"]
    spec = store.experiments().get(experiment, {})
    keys = ["case", *axes(spec)[0]]
    m = store.metrics(list(runs["id"]), split=SPLIT)
    m = m[m["name"].isin((metric, "v_hat_tracks"))]
    if m.empty or not (m["name"] == metric).any():
        return pd.DataFrame()
    series = {name: g.sort_values("step") for name, g in m.groupby(["run_id", "name"])}
    rows = []
    for cell, group in runs.groupby([runs[k].map(hashable) for k in keys], sort=False):
        changes, levels, early, late = [], [], [], []
        for run_id in group["id"]:
            kl = series.get((run_id, metric))
            if kl is None:
                continue
            changes.append(second_half_change(kl["step"].to_numpy(), kl["value"].to_numpy()))
            levels.append(_halves(kl["step"].to_numpy(), kl["value"].to_numpy())[1])
            v = series.get((run_id, "v_hat_tracks"))
            if v is not None:
                first, second = _halves(v["step"].to_numpy(), v["value"].to_numpy())
                early.append(first)
                late.append(second)
        changes = [c for c in changes if not math.isnan(c)]
        if not changes:
            continue
        e = one_sample(changes)
        rows.append(
            {
                **dict(zip(keys, cell, strict=True)),
                "seeds": e.n,
                "change": e.mean,
                "change_lo": e.lo,
                "change_hi": e.hi,
                "verdict": verdict(e),
                "second_half_median": float(np.nanmean(levels)),
                "v_hat_tracks_first_half": float(np.nanmean(early)) if early else math.nan,
                "v_hat_tracks_second_half": float(np.nanmean(late)) if late else math.nan,
            }
        )
    return pd.DataFrame(rows)
