"""Claim rules about scale-invariant weights (Grosse 2022, CSC 2541 lecture 5), from the probes.

A weight w that feeds a normalizer is scale-invariant: L(cw) = L(w) for c > 0, so its
gradient g is orthogonal to it (w·g = 0) and scales as 1/‖w‖. For each such tensor ``<t>``
the engine records, at each recorded step k: split ``invariance``: ``<t>/grad_cosine`` =
cos(w_k, g_k), ``<t>/norm_law_residual`` = (‖w_{k+1}‖² − ‖w_k‖² − η²‖g_k‖²)/‖w_{k+1}‖²,
``<t>/angular_update`` = ∠(w_k, w_{k+1}); split ``effective_lr`` ``<t>/effective_lr``; split
``params`` ``<t>/l2`` = ‖w_k‖. Rules read, per tuned run of ``case``, these series and
decide per seed (``verdicts.per_seed``: holds when every seed passes, fails when at most
half do), except ``gap_closed``, an interval over seeds.

- ``stays_below``: the largest |value| over every recorded step and every tensor's
  ``<t>/<quantity>`` in ``split`` (default ``invariance``) is at most ``max``
  (``grad_cosine``: orthogonality; ``norm_law_residual``: ‖w‖² grows by η²‖g‖² a step).
- ``sqrt_growth``: ‖w_k‖² = a·√(1 + k/k₀), the lecture's law under SGD without decay
  (``sqrt_law``), fitted to each scale-invariant tensor's ``<t>/l2`` squared with R² ≥
  ``min_r2`` for every tensor. The tensors: ``tensors``, else those with a
  ``norm_law_residual`` or ``effective_lr`` series.
- ``angular_equilibrium``: over the last fifth of training, each tensor's mean
  ``angular_update`` is within relative ``tolerance`` of ``equilibrium_angle`` (``formula``
  ``sgdm`` or ``adamw``, η, λ and α or β₁ from the run's config, λ per ``decay_groups``),
  and its ``<t>/l2`` has settled there (``convergence.settling``): two per-seed checks.
  The tensors: ``tensors``, else those with an ``angular_update`` series.
- ``gap_closed``: ``graft`` closes at least ``min_share`` of the ``metric`` gap between ``a``
  (with decay) and ``b`` (without), paired by seed: holds when the 95% interval of
  d = (graft − b) − min_share·(a − b) lies above 0, fails when below; inconclusive when
  the gap a − b is not itself significantly positive (its interval reaches 0).
- ``tracks``: ``a`` and ``b`` stay together as functions over training, seed by seed: at
  every step both recorded, |Δ eval accuracy| ≤ ``accuracy_tolerance`` and
  |Δ eval loss|/loss_b ≤ ``loss_tolerance``.

"The effective lr falls" is ``curves``' ``shrinks``; "weight decay then changes nothing" is
``claims``' ``similar``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from optlab.analysis.convergence import tail
from optlab.analysis.curves import settled, unrecorded
from optlab.analysis.stats import MIN_SEEDS, one_sample
from optlab.analysis.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Check,
    Evidence,
    missing,
    paired_values,
    per_seed,
    unless_too_few,
)
from optlab.optim.groups import weight_decay_for

Series = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (split, name) → (steps, values)
K0_DECADES = 4  # sqrt_law searches k₀ within 10^±4 of the recorded span
GRID = 161  # log-spaced k₀ on that range before refinement


def _recorded(ev: Evidence, part: dict, splits: Sequence[str]) -> list[tuple[pd.Series, Series]]:
    """Per tuned run of ``part['case']`` that recorded anything in ``splits``, in seed order:
    its row of ``Evidence.runs`` (config columns, ``train.seed``) and its series."""
    runs = ev.runs(part["experiment"], part["case"])
    if runs.empty:
        return []
    rows = runs.set_index("id")
    out = []
    for run_id, m in ev.store.metrics(list(runs["id"]), split=list(splits)).groupby("run_id"):
        series = {
            key: (s["step"].to_numpy(float), s["value"].to_numpy(float))
            for key, s in m.groupby(["split", "name"])
        }
        out.append((rows.loc[run_id], series))
    return sorted(out, key=lambda r: r[0]["train.seed"])


def _tensors(series: Series, split: str, quantity: str) -> list[str]:
    """The tensors t with a ``<t>/<quantity>`` series in ``split``."""
    suffix = f"/{quantity}"
    return sorted(n.removesuffix(suffix) for s, n in series if s == split and n.endswith(suffix))


def _stays_below(ev: Evidence, part: dict) -> list[Check]:
    case, quantity, bound = part["case"], part["quantity"], part["max"]
    split = part.get("split", "invariance")
    largest = []
    for _, series in _recorded(ev, part, [split]):
        values = [series[(split, f"{t}/{quantity}")][1] for t in _tensors(series, split, quantity)]
        if values:
            largest.append(float(np.abs(np.concatenate(values)).max()))  # NaN stays NaN: fails
    if not largest:
        return [unrecorded(ev, part, f"{case} <t>/{quantity}", "invariance")]
    shown = "/".join(f"{x:.2g}" for x in largest)
    what = f"{case} |{quantity}| ≤ {bound:g} at every step and tensor (largest {shown})"
    return per_seed([x <= bound for x in largest], what)


def sqrt_law(steps: np.ndarray, sq_norms: np.ndarray) -> tuple[float, float, float]:
    """Least squares ‖w_k‖² ≈ a·√(1 + k/k₀): (a, k₀, R²).

    With w·g = 0, ‖w_{k+1}‖² = ‖w_k‖² + η²‖g_k‖², and scale invariance gives ‖g_k‖² =
    C/‖w_k‖² (C: the squared gradient norm at unit weight norm, taken as constant), so
    d‖w‖⁴/dk = 2η²C: ‖w_k‖² = ‖w_0‖²·√(1 + k/k₀) with k₀ = ‖w_0‖⁴/(2η²C). Given k₀, a is
    linear least squares; k₀ minimizes the residual over a log grid within 10^±4 of the
    recorded span, refined by golden section between the best point's neighbours.
    """
    k, y = np.asarray(steps, float), np.asarray(sq_norms, float)

    def fit(log_k0: float) -> tuple[float, float]:
        f = np.sqrt(1 + k / math.exp(log_k0))
        a = float(f @ y / (f @ f))
        residual = y - a * f
        return a, float(residual @ residual)

    center = math.log(max(k[-1] - k[0], 1.0))
    grid = center + np.linspace(-K0_DECADES, K0_DECADES, GRID) * math.log(10)
    best = int(np.argmin([fit(g)[1] for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, GRID - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    while hi - lo > 1e-10:
        left, right = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, right) if fit(left)[1] < fit(right)[1] else (left, hi)
    log_k0 = (lo + hi) / 2
    a, sse = fit(log_k0)
    total = float(((y - y.mean()) ** 2).sum())
    return a, math.exp(log_k0), 1 - sse / total if total > 0 else 1.0


def _sqrt_growth(ev: Evidence, part: dict) -> list[Check]:
    case, min_r2 = part["case"], part["min_r2"]
    fits, passed = [], []
    for _, series in _recorded(ev, part, ["params", "invariance", "effective_lr"]):
        found = _tensors(series, "invariance", "norm_law_residual")
        found += _tensors(series, "effective_lr", "effective_lr")
        tensors = part.get("tensors", sorted(set(found)))
        norms = [series.get(("params", f"{t}/l2")) for t in tensors]
        if not norms or None in norms:
            continue
        seed = [sqrt_law(steps, l2**2) for steps, l2 in norms]
        fits += seed
        passed.append(all(r2 >= min_r2 for _, _, r2 in seed))
    if not passed:
        return [unrecorded(ev, part, f"{case} <t>/l2 of the scale-invariant tensors", "params")]
    k0, r2 = np.array([f[1] for f in fits]), np.array([f[2] for f in fits])
    what = (
        f"{case} ‖w_k‖² = a√(1 + k/k₀) with R² ≥ {min_r2} for every tensor (k₀ median "
        f"{np.median(k0):.4g} [{k0.min():.4g}, {k0.max():.4g}], R² {r2.min():.4f}–{r2.max():.4f} "
        f"over {len(fits)} tensors × seeds)"
    )
    return per_seed(passed, what)


FORMULAS = {"sgdm": "√(2ηλ/(1+α))", "adamw": "√(2ηλ(1−β₁)/(1+β₁))"}


def equilibrium_angle(formula: str, lr: float, weight_decay: float, beta: float) -> float:
    """The angular update per step at which decay's shrinking of a scale-invariant weight's
    norm balances the gradient's growing of it (Wan et al. 2021; Kosson et al. 2024):
    √(2ηλ/(1+α)) for SGD with momentum α and L2 decay, √(2ηλ(1−β₁)/(1+β₁)) for AdamW."""
    _known(formula)
    shrink = 1.0 if formula == "sgdm" else 1 - beta
    return math.sqrt(2 * lr * weight_decay * shrink / (1 + beta))


def _known(formula: str) -> None:
    if formula not in FORMULAS:
        raise ValueError(
            f"angular_equilibrium: formula {formula!r} is not one of {', '.join(FORMULAS)}"
        )


def weight_decay_of(run: pd.Series, tensor: str) -> float:
    """λ of ``tensor``: its ``decay_groups`` pattern's (the store flattens the groups into
    ``optimizer.decay_groups.<pattern>`` columns), else the run's ``weight_decay``."""
    prefix = "optimizer.decay_groups."
    groups = {
        k.removeprefix(prefix): float(v)
        for k, v in run.items()
        if k.startswith(prefix) and pd.notna(v)
    }
    group = weight_decay_for(tensor, groups)
    return float(run["optimizer.weight_decay"]) if group is None else group


def _span(values: Sequence[float], spec: str) -> str:
    """The range of ``values`` as lo–hi, or one number where both ends print the same."""
    lo, hi = format(min(values), spec), format(max(values), spec)
    return lo if lo == hi else f"{lo}–{hi}"


def _angular_equilibrium(ev: Evidence, part: dict) -> list[Check]:
    case, formula, tolerance = part["case"], part["formula"], part["tolerance"]
    _known(formula)
    ratios, predicted, within, still = [], [], [], []
    for run, series in _recorded(ev, part, ["invariance", "params"]):
        schedule = run["optimizer.lr_schedule.kind"]
        if schedule not in ("constant", "warmup"):
            return [missing(f"{case} angular update", f"lr schedule {schedule}: η not constant")]
        tensors = part.get("tensors", _tensors(series, "invariance", "angular_update"))
        curves = [
            (series.get(("invariance", f"{t}/angular_update")), series.get(("params", f"{t}/l2")))
            for t in tensors
        ]
        if not curves or any(None in c for c in curves):
            continue
        beta = run["optimizer.momentum"] if formula == "sgdm" else run["optimizer.betas"][0]
        seed = []
        for t, ((steps, angle), _) in zip(tensors, curves, strict=True):
            lam = weight_decay_of(run, t)
            p = equilibrium_angle(formula, run["optimizer.lr"], lam, beta)
            ratio = float(tail(steps, angle)[1].mean()) / p if p > 0 else math.inf
            seed.append(ratio)
            predicted.append(p)
        ratios += seed
        within.append(all(abs(r - 1) <= tolerance for r in seed))
        still.append(all(settled(*l2) for _, l2 in curves))
    if not within:
        return [unrecorded(ev, part, f"{case} <t>/angular_update and <t>/l2", "invariance")]
    angle = (
        f"{case} mean angular update over the last fifth within {tolerance:.0%} of "
        f"{FORMULAS[formula]} = {_span(predicted, '.3g')} rad for every tensor "
        f"(measured/predicted {_span(ratios, '.3f')})"
    )
    norm = f"{case} ‖w‖ of every tensor settled over the last fifth"
    return per_seed(within, angle) + per_seed(still, norm)


def _gap_closed(ev: Evidence, part: dict) -> list[Check]:
    exp, metric, share = part["experiment"], part["metric"], part["min_share"]
    graft, a, b = part["graft"], part["a"], part["b"]
    label = f"{graft} closes the {metric} gap {a} − {b}"
    values = paired_values(ev, exp, (graft, a, b), metric, label)
    if isinstance(values, Check):
        return [values]
    g, x, y = values
    gap, d = one_sample(x - y), one_sample(g - y - share * (x - y))
    gap_text = f"{metric} gap {a} − {b} = {gap.mean:+.4f} [{gap.lo:+.4f}, {gap.hi:+.4f}]"
    if d.n >= MIN_SEEDS and not gap.lo > 0:
        return [Check(f"{gap_text} paired n={d.n}: no gap to close", INCONCLUSIVE, method="paired")]
    # the share of the mean gap (per-seed shares blow up where a seed's own gap is near 0)
    closed = float(np.mean(g - y) / np.mean(x - y)) if np.mean(x - y) else math.nan
    value = (
        f"{gap_text}; {graft} closes {closed:.0%} of it (≥ {share:.0%}: "
        f"d = {d.mean:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]) paired n={d.n}"
    )
    leaning = HOLDS if d.mean > 0 else FAILS if d.mean < 0 else None
    verdict = HOLDS if d.lo > 0 else FAILS if d.hi < 0 else INCONCLUSIVE
    fields = {"leaning": leaning, "gap": abs(d.mean), "spread": d.spread}
    check = Check(value, verdict, method="paired", **fields)
    short = f"{metric} gap {a} − {b} = {gap.mean:+.4f}; {graft} closes {closed:.0%}"
    return [unless_too_few(check, d.n, short)]


def _largest_difference(
    x: tuple[np.ndarray, np.ndarray], y: tuple[np.ndarray, np.ndarray], relative: bool
) -> float:
    """max |x − y| (over |y| where ``relative``) at the steps both series recorded; ∞ where
    they share none."""
    (sx, vx), (sy, vy) = x, y
    _, i, j = np.intersect1d(sx, sy, return_indices=True)
    if len(i) == 0:
        return math.inf
    diff = np.abs(vx[i] - vy[j])
    with np.errstate(divide="ignore", invalid="ignore"):
        return float((diff / np.abs(vy[j]) if relative else diff).max())


def _tracks(ev: Evidence, part: dict) -> list[Check]:
    a, b = part["a"], part["b"]
    acc_tol, loss_tol = part["accuracy_tolerance"], part["loss_tolerance"]
    names = [("eval", "accuracy"), ("eval", "loss")]
    sides = [
        {
            run["train.seed"]: s
            for run, s in _recorded(ev, {**part, "case": c}, ["eval"])
            if all(n in s for n in names)
        }
        for c in (a, b)
    ]
    seeds = sorted(set(sides[0]) & set(sides[1]))
    if not seeds:
        return [unrecorded(ev, part, f"eval accuracy and loss of {a}, {b}")]
    pairs = [(sides[0][s], sides[1][s]) for s in seeds]
    acc = [_largest_difference(x[names[0]], y[names[0]], False) for x, y in pairs]
    loss = [_largest_difference(x[names[1]], y[names[1]], True) for x, y in pairs]
    what = (
        f"{a} tracks {b}: eval accuracy within {acc_tol} and loss within {loss_tol:.2g} "
        f"of {b}'s (relative) at every step (largest: accuracy "
        f"{'/'.join(f'{v:.3f}' for v in acc)}; loss {'/'.join(f'{v:.2g}' for v in loss)})"
    )
    passed = [p <= acc_tol and q <= loss_tol for p, q in zip(acc, loss, strict=True)]
    return per_seed(passed, what)


RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {
    "stays_below": _stays_below,
    "sqrt_growth": _sqrt_growth,
    "angular_equilibrium": _angular_equilibrium,
    "gap_closed": _gap_closed,
    "tracks": _tracks,
}
