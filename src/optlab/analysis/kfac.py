"""Claim rules about K-FAC and weight decay's mechanisms 2 and 3 (Grosse (2022), CSC 2541
lecture 5, "Three Mechanisms"; Zhang, Wang, Xu and Grosse 2019), from the kfac and jacobian
probes (``optlab.probes.kfac``).

The kfac probe records, per K-FAC layer ``<t>``, ``<t>/damping_ratio`` = γ/(λ_max(A)·λ_max(G)):
the damping against the largest eigenvalue of the layer's curvature block A ⊗ G; the jacobian
probe records ``ratio_whitened`` = θᵀĜθ / ((L + 1)·E tr(J Σ Jᵀ)) among others. Rules over
series decide per seed (``verdicts.per_seed``: holds when every seed passes, fails when at most
half do); ``helps_more`` is a paired t test, Holm-corrected with the table's others.

- ``stays_within``: every recorded value of ``series`` in ``split`` from step ``from_step`` on
  lies in [``lo``, ``hi``].
- ``damping_takes_over``: for every layer, the damping ratio's *rise*, its mean over the last
  fifth of training over its lowest recorded value, and its *end*, that mean, meet the bounds
  given: ``min_rise`` / ``max_rise``, ``min_end`` / ``max_end``. Measured from the lowest point,
  not the first: early on the factors move with the weights' first growth (under the Fisher the
  ratio first falls, as G grows from a near-uniform softmax), and what the lecture describes
  is the fall of G "over the course of optimization" after that.
- ``damping_attenuated``: for every layer, the damping ratio's end in ``a`` is below its end in
  ``b``, per seed (paired by training seed: each of ``a``'s seeds against ``b``'s run of it).
- ``helps_more``: what ``metric`` gains from ``a_base`` to ``a`` exceeds what it gains from
  ``b_base`` to ``b``, paired by seed: d = (a − a_base) − (b − b_base), oriented so that better
  is positive, its mean tested against 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optlab.analysis.convergence import tail
from optlab.analysis.curves import unrecorded
from optlab.analysis.stats import one_sample
from optlab.analysis.verdicts import (
    Check,
    Evidence,
    paired_values,
    per_seed,
    tested,
    unless_too_few,
)

SPLIT, RATIO = "kfac", "damping_ratio"


def _stays_within(ev: Evidence, part: dict) -> list[Check]:
    case, split, name = part["case"], part["split"], part["series"]
    lo, hi, first = part["lo"], part["hi"], part["from_step"]
    ranges = []
    for s in ev.series(part["experiment"], case, split, name):
        v = s.loc[s["step"] >= first, "value"].to_numpy(float)
        ranges.append((float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan))
    if not ranges:
        return [unrecorded(ev, part, f"{case} {name}", split)]
    shown = ", ".join(f"{a:.3f}–{b:.3f}" for a, b in ranges)
    what = f"{case} {name} within [{lo}, {hi}] from step {first} on (per seed: {shown})"
    return per_seed([lo <= a and b <= hi for a, b in ranges], what)  # NaN: fails


def rise_and_end(steps: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(the mean over the last fifth / the lowest value, the mean over the last fifth)."""
    end = float(tail(steps, values)[1].mean())
    return end / float(values.min()), end


def _layers(ev: Evidence, part: dict, case: str) -> dict[int, dict[str, tuple[float, float]]]:
    """Per training seed of ``case``, each K-FAC layer's (rise, end) of its damping ratio (the
    layers ``tensors``, else every one recorded)."""
    runs = ev.runs(part["experiment"], case)
    if runs.empty:
        return {}
    seed_of = dict(zip(runs["id"], runs["train.seed"], strict=True))
    names = [f"{t}/{RATIO}" for t in part.get("tensors", [])]
    m = ev.store.metrics(list(runs["id"]), split=SPLIT)
    m = m[m["name"].isin(names) if names else m["name"].str.endswith(f"/{RATIO}")]
    out = {}
    for run_id, run in m.groupby("run_id"):
        layers = {
            name.removesuffix(f"/{RATIO}"): rise_and_end(
                s["step"].to_numpy(float), s["value"].to_numpy(float)
            )
            for name, s in run.sort_values("step").groupby("name")
        }
        if len(layers) >= len(names):
            out[int(seed_of[run_id])] = layers
    return out


BOUNDS: dict[str, tuple[int, Callable[[float, float], bool], str]] = {
    "min_rise": (0, lambda x, b: x >= b, "rise ≥"),
    "max_rise": (0, lambda x, b: x <= b, "rise ≤"),
    "min_end": (1, lambda x, b: x >= b, "end ≥"),
    "max_end": (1, lambda x, b: x <= b, "end ≤"),
}


def _damping_takes_over(ev: Evidence, part: dict) -> list[Check]:
    case = part["case"]
    seeds = _layers(ev, part, case)
    if not seeds:
        return [unrecorded(ev, part, f"{case} <t>/{RATIO}", SPLIT)]
    bounds = {k: v for k, v in BOUNDS.items() if k in part}

    def passes(layer: tuple[float, float]) -> bool:
        return all(test(layer[i], part[k]) for k, (i, test, _) in bounds.items())

    rises = [r for layers in seeds.values() for r, _ in layers.values()]
    ends = [e for layers in seeds.values() for _, e in layers.values()]
    wanted = ", ".join(f"{label} {part[k]:g}" for k, (_, _, label) in bounds.items())
    what = (
        f"{case} damping ratio of every layer: {wanted} (rise {min(rises):.3g}–{max(rises):.3g}, "
        f"end {min(ends):.3g}–{max(ends):.3g} over {len(rises)} layers × seeds)"
    )
    return per_seed([all(passes(x) for x in layers.values()) for layers in seeds.values()], what)


def _damping_attenuated(ev: Evidence, part: dict) -> list[Check]:
    a, b = part["a"], part["b"]
    sides = [_layers(ev, part, a), _layers(ev, part, b)]
    seeds = sorted(set(sides[0]) & set(sides[1]))
    if not seeds:
        return [unrecorded(ev, part, f"<t>/{RATIO} of {a}, {b}", SPLIT)]
    ratios = [
        [sides[0][s][t][1] / sides[1][s][t][1] for t in sides[0][s] if t in sides[1][s]]
        for s in seeds
    ]
    flat = [r for seed in ratios for r in seed]
    what = (
        f"damping ratio's end in {a} below {b}'s in every layer (end {a}/{b} "
        f"{min(flat):.3g}–{max(flat):.3g} over {len(flat)} layers × seeds)"
    )
    return per_seed([bool(r) and max(r) < 1 for r in ratios], what)


def _helps_more(ev: Evidence, part: dict) -> list[Check]:
    exp, metric = part["experiment"], part["metric"]
    names = [part[k] for k in ("a", "a_base", "b", "b_base")]
    a, a_base, b, b_base = names
    label = f"{metric} gain {a_base} → {a} minus {b_base} → {b}"
    values = paired_values(ev, exp, names, metric, label)
    if isinstance(values, Check):
        return [values]
    x, x0, y, y0 = values
    e = one_sample((x - x0) - (y - y0))
    gains = f"{(x - x0).mean():+.4f} vs {(y - y0).mean():+.4f}"
    value = f"{label} = {e.mean:+.4f} [{e.lo:+.4f}, {e.hi:+.4f}] ({gains}) paired n={e.n}"
    return [unless_too_few(tested(value, e, 1), e.n, f"{label} = {e.mean:+.4f} paired")]


RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {
    "stays_within": _stays_within,
    "damping_takes_over": _damping_takes_over,
    "damping_attenuated": _damping_attenuated,
    "helps_more": _helps_more,
}
