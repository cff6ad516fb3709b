"""Convergence as the paper asks it (the AdamWAnalysis README, "classes of convergence"), per run.

1. Does the loss converge (lim sup = lim inf)? Over the last fifth of training, the gap
   between the running max and min of the eval loss, also relative to its mean.
2.-4. Do the parameters settle, and when? For each tensor's mean over training: over
   the last fifth, the drift (the change a straight-line fit implies across the window)
   against the noise (the spread of the points around that line). A tensor has settled
   when its drift is within twice its noise, or negligible against its size (1e-3 of
   its largest magnitude). It settled at the first step after which the mean stays
   within the last fifth's band: its mean ± the larger of half its range and four
   times its noise, widened where needed to hold every point of the last fifth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optlab.analysis.stats import linear_fit
from optlab.store import Store

TAIL = 0.2  # the last fifth of training
NOISE_MULTIPLE = 2.0
NEGLIGIBLE = 1e-3
BAND_NOISE_MULTIPLE = 4.0


@dataclass(frozen=True)
class Settling:
    settled: bool
    drift: float
    noise: float
    settle_step: int | None  # None when it has not settled


def tail(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points in the last fifth of the recorded steps (at least three)."""
    cut = steps[-1] - TAIL * (steps[-1] - steps[0])
    keep = steps >= cut
    if keep.sum() < 3:
        keep[-3:] = True
    return steps[keep], values[keep]


def loss_gap(steps: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """(max − min, (max − min)/mean) of the loss over the last fifth."""
    _, window = tail(np.asarray(steps), np.asarray(loss, dtype=float))
    gap = float(window.max() - window.min())
    return gap, gap / float(abs(window.mean())) if window.mean() else float("inf")


def settling(steps: np.ndarray, values: np.ndarray) -> Settling:
    """Whether, and from which step, a tensor statistic has stopped moving."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    s, v = tail(steps, values)
    slope, intercept, _ = linear_fit(s, v)
    drift = abs(slope) * (s[-1] - s[0])
    noise = float(np.std(v - (slope * s + intercept), ddof=2)) if len(v) > 2 else 0.0
    scale = float(np.abs(values).max())
    settled = drift <= NOISE_MULTIPLE * noise or drift <= NEGLIGIBLE * scale
    if not settled:
        return Settling(False, drift, noise, None)
    half = max((v.max() - v.min()) / 2, BAND_NOISE_MULTIPLE * noise)
    lo, hi = min(v.min(), v.mean() - half), max(v.max(), v.mean() + half)
    inside = (values >= lo) & (values <= hi)
    outside = np.flatnonzero(~inside)
    first = 0 if len(outside) == 0 else outside[-1] + 1
    return Settling(True, drift, noise, int(steps[first]))


def run_rows(run_id: str, metrics: pd.DataFrame) -> list[tuple[str, str, str, int, float]]:
    """A run's convergence figures as store rows (split ``convergence``, at its last step):
    ``loss_gap`` and ``loss_relative_gap`` of the eval loss; per tensor ``<name>/settled``
    (0 or 1) and ``<name>/settle_step``; and ``settled_share`` over its tensors."""
    rows = []
    loss = metrics[(metrics["split"] == "eval") & (metrics["name"] == "loss")]
    if len(loss) < 3:
        return rows
    last = int(loss["step"].max())
    gap, relative = loss_gap(loss["step"].to_numpy(), loss["value"].to_numpy())
    rows += [(run_id, "convergence", "loss_gap", last, gap)]
    rows += [(run_id, "convergence", "loss_relative_gap", last, relative)]
    means = metrics[(metrics["split"] == "params") & metrics["name"].str.endswith("/mean")]
    settled = []
    for name, series in means.groupby("name"):
        if len(series) < 3:
            continue
        s = settling(series["step"].to_numpy(), series["value"].to_numpy())
        tensor = name.removesuffix("/mean")
        settled.append(s.settled)
        rows.append((run_id, "convergence", f"{tensor}/settled", last, float(s.settled)))
        if s.settle_step is not None:
            rows.append((run_id, "convergence", f"{tensor}/settle_step", last, s.settle_step))
    if settled:
        rows.append((run_id, "convergence", "settled_share", last, float(np.mean(settled))))
    return rows


def record(store: Store, run_ids: list[str]) -> None:
    """Write the convergence figures of finished runs that do not have them yet."""
    have = set(store.metrics(run_ids, split="convergence")["run_id"]) if run_ids else set()
    todo = [i for i in run_ids if i not in have]
    if not todo:
        return
    metrics = store.metrics(todo, split=("eval", "params"))  # what ``run_rows`` reads
    store.log([row for run_id, m in metrics.groupby("run_id") for row in run_rows(run_id, m)])
