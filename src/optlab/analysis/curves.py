"""Claim rules over training curves: what a recorded series does over training, per seed.

Each rule reads, per tuned run of a ``case``, one series (``series`` in ``split``, default
``params``: e.g. ``final.norm/mean``; ``eval`` ``loss``; ``scalars`` ``offset``; ``outputs``
``majority_logit``) and decides per seed (``verdicts.per_seed``: holds when every seed
passes, fails when at most half do), except ``noisier``, which compares two cases seed by
seed with a paired t test. "Settled" is ``optlab.analysis.convergence.settling``: over the
last fifth of training, the drift of a line fit within twice the noise around it.

- ``grows_linearly``: rises with a straight-line fit of R² ≥ ``min_r2``.
- ``shrinks``: ends below where it started.
- ``grows``: ends larger in magnitude than it started (|last| > |first|).
- ``keeps_moving``: moves in ``direction`` ("increasing"/"decreasing") over training and is
  still moving that way at the end: net change and last-fifth slope in that direction, and
  not settled.
- ``approaches``: approaching a value it has not reached: over the last fifth it moves at
  most ``max_ratio`` of its average speed over the run, and it has not settled.
- ``unsettled``: of the ``tensors`` (their ``<tensor>/mean``), at least ``at_least`` (default
  all) have not settled.
- ``jump``: the eval loss (or ``series``) first falls by at least ``min_drop`` within
  ``window`` steps at a step within ``at`` ± ``tolerance`` (the middle of that fall);
  inconclusive when the runs end before ``at + tolerance``.
- ``climbs``: the largest climb of the eval loss (or ``series``) within ``window`` steps is
  at least ``min`` (it bounces) or at most ``max`` (it is smooth).
- ``noisier``: ``a``'s eval loss is noisier than ``b``'s: the mean absolute change between
  successive evaluations, compared per seed (paired t, Welch's where unpaired), Holm-corrected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from optlab.analysis.convergence import settling, tail
from optlab.analysis.stats import compare, linear_fit
from optlab.analysis.verdicts import (
    Check,
    Evidence,
    greater,
    missing,
    per_seed,
)

Curve = Callable[[np.ndarray, np.ndarray], bool]


def tail_slope(steps: np.ndarray, values: np.ndarray) -> float:
    """The least-squares slope over the last fifth of the recorded steps."""
    return linear_fit(*tail(np.asarray(steps, float), np.asarray(values, float)))[0]


def settled(steps: np.ndarray, values: np.ndarray) -> bool:
    return settling(steps, values).settled


def keeps_moving(steps: np.ndarray, values: np.ndarray, sign: int) -> bool:
    """Net change and last-fifth slope both of ``sign``, and not settled."""
    net = values[-1] - values[0]
    return sign * net > 0 and sign * tail_slope(steps, values) > 0 and not settled(steps, values)


def speed_ratio(steps: np.ndarray, values: np.ndarray) -> float:
    """|last-fifth slope| over the average speed |v_last − v_first|/(t_last − t_first)
    (∞ when the series ends where it started)."""
    average = abs(values[-1] - values[0]) / (steps[-1] - steps[0])
    return abs(tail_slope(steps, values)) / average if average > 0 else np.inf


def first_drop(
    steps: np.ndarray, values: np.ndarray, window: float, min_drop: float
) -> float | None:
    """The middle step (t + t′)/2 of the first fall v(t) − v(t′) ≥ ``min_drop`` with
    t < t′ ≤ t + ``window`` (the earliest t′, then the latest t); None when there is none."""
    for j in range(1, len(steps)):
        for i in range(j - 1, -1, -1):
            if steps[j] - steps[i] > window:
                break
            if values[i] - values[j] >= min_drop:
                return (steps[i] + steps[j]) / 2
    return None


def largest_climb(steps: np.ndarray, values: np.ndarray, window: float) -> float:
    """max v(t′) − v(t) over t < t′ ≤ t + ``window`` (0 where it never rises)."""
    climb = 0.0
    for i in range(len(steps)):
        later = values[(steps > steps[i]) & (steps <= steps[i] + window)]
        if len(later):
            climb = max(climb, float(later.max() - values[i]))
    return climb


def noise(steps: np.ndarray, values: np.ndarray) -> float:
    """The mean absolute change between successive recorded values: near zero for a smooth
    curve, and a single jump adds only its size over the number of points."""
    return float(np.abs(np.diff(values)).mean()) if len(values) > 1 else np.nan


def _curves(ev: Evidence, part: dict, test: Curve, what: str) -> list[Check]:
    """Per seed, ``test(steps, values)`` of the series ``part['series']`` of ``part['case']``."""
    split, name = part.get("split", "params"), part["series"]
    runs = ev.series(part["experiment"], part["case"], split, name)
    if not runs:
        return [unrecorded(ev, part, f"{part['case']} {name}", "params")]
    passed = [test(s["step"].to_numpy(float), s["value"].to_numpy(float)) for s in runs]
    return per_seed(passed, f"{part['case']} {name} {what}")


def _grows_linearly(ev: Evidence, part: dict) -> list[Check]:
    def linear(steps: np.ndarray, values: np.ndarray) -> bool:
        slope, _, r2 = linear_fit(steps, values)
        return slope > 0 and r2 >= part["min_r2"]

    return _curves(ev, part, linear, f"grows with R² ≥ {part['min_r2']}")


def _shrinks(ev: Evidence, part: dict) -> list[Check]:
    return _curves(ev, part, lambda s, v: v[-1] < v[0], "shrinks")


def _grows(ev: Evidence, part: dict) -> list[Check]:
    return _curves(ev, part, lambda s, v: abs(v[-1]) > abs(v[0]), "grows in magnitude")


def _keeps_moving(ev: Evidence, part: dict) -> list[Check]:
    sign = 1 if part["direction"] == "increasing" else -1
    verb = "rises" if sign > 0 else "falls"
    return _curves(
        ev, part, lambda s, v: keeps_moving(s, v, sign), f"{verb} and is still moving at the end"
    )


def _approaches(ev: Evidence, part: dict) -> list[Check]:
    r = part["max_ratio"]

    def approaching(steps: np.ndarray, values: np.ndarray) -> bool:
        return speed_ratio(steps, values) <= r and not settled(steps, values)

    what = f"slows to ≤ {r}× its average speed, not yet settled,"
    return _curves(ev, part, approaching, what)


def _unsettled(ev: Evidence, part: dict) -> list[Check]:
    tensors, case = part["tensors"], part["case"]
    at_least = part.get("at_least", len(tensors))
    names = [f"{t}/mean" for t in tensors]
    runs = ev.curves(part["experiment"], case, "params", names)
    if not runs:
        return [unrecorded(ev, part, f"{case} {', '.join(names)}", "params")]
    counts = [
        sum(not settled(c[n]["step"].to_numpy(float), c[n]["value"].to_numpy(float)) for n in names)
        for c in runs
    ]
    counted = "/".join(str(n) for n in counts)
    what = f"{case}: {at_least}+ of {', '.join(tensors)} unsettled (per seed: {counted})"
    return per_seed([n >= at_least for n in counts], what)


def _eval_curves(ev: Evidence, part: dict) -> list[pd.DataFrame]:
    return ev.series(part["experiment"], part["case"], part.get("split", "eval"), _loss(part))


def unrecorded(ev: Evidence, part: dict, label: str, default: str = "eval") -> Check:
    """Why a series is missing: no runs of the case (or of ``a``, ``b``), or not recorded."""
    cases = [part[k] for k in ("a", "b") if k in part] or [part["case"]]
    if any(ev.runs(part["experiment"], case).empty for case in cases):
        return missing(label)
    return missing(label, f"not recorded (split {part.get('split', default)})")


def _loss(part: dict) -> str:
    return part.get("series", "loss")


def _jump(ev: Evidence, part: dict) -> list[Check]:
    at, tol, window, drop = part["at"], part["tolerance"], part["window"], part["min_drop"]
    runs, label = _eval_curves(ev, part), f"{part['case']} {_loss(part)}"
    if not runs:
        return [unrecorded(ev, part, label)]
    end = min(int(s["step"].iloc[-1]) for s in runs)
    if end < at + tol:
        return [missing(label, f"runs end at step {end}, before step {at + tol}")]
    steps = [
        first_drop(s["step"].to_numpy(float), s["value"].to_numpy(float), window, drop)
        for s in runs
    ]
    found = ", ".join("none" if t is None else f"{t:.0f}" for t in steps)
    what = f"{label} first falls ≥ {drop} within {window} steps at {at} ± {tol} (at {found})"
    return per_seed([t is not None and abs(t - at) <= tol for t in steps], what)


def _climbs(ev: Evidence, part: dict) -> list[Check]:
    window, label = part["window"], f"{part['case']} {_loss(part)}"
    runs = _eval_curves(ev, part)
    if not runs:
        return [unrecorded(ev, part, label)]
    climbs = [
        largest_climb(s["step"].to_numpy(float), s["value"].to_numpy(float), window) for s in runs
    ]
    if "min" in part:
        passed, bound = [c >= part["min"] for c in climbs], f"≥ {part['min']}"
    else:
        passed, bound = [c <= part["max"] for c in climbs], f"≤ {part['max']}"
    shown = "/".join(f"{c:.3f}" for c in climbs)
    return per_seed(passed, f"{label} climbs {bound} within {window} steps ({shown})")


def _noisier(ev: Evidence, part: dict) -> list[Check]:
    exp, a, b, name = part["experiment"], part["a"], part["b"], _loss(part)
    split = part.get("split", "eval")
    x, y = (ev.measured(exp, case, split, name, noise) for case in (a, b))
    if len(x) == 0 or len(y) == 0:
        return [unrecorded(ev, part, f"{name} of {a}, {b}")]
    e = compare(x, y)
    label = f"{name} noise {a} {x.mean():.4f} vs {b} {y.mean():.4f}"
    return greater(label, e)


RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {
    "grows_linearly": _grows_linearly,
    "shrinks": _shrinks,
    "grows": _grows,
    "keeps_moving": _keeps_moving,
    "approaches": _approaches,
    "unsettled": _unsettled,
    "jump": _jump,
    "climbs": _climbs,
    "noisier": _noisier,
}
