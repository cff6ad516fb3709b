"""Claim rules about which solution an optimizer reaches on the memorize-or-generalize toy of
the 2023 essay on AdamW (``mg_toy``: n memorizers w_1..w_n, one generalizer w_{n+1}, and
every fit has w_i + w_{n+1} = 1).

Each rule reads, per run of a ``case``, the memorizers' mean m̄ and the generalizer g
(split ``scalars``) from the case's runs at the most steps the store holds (a store may hold
a short profile's runs beside a long one's), and measures them against two fits: the
minimum-L2-norm one, (m̄, g) = (1/(n+1), n/(n+1)), where gradient descent from zero stays,
and the minimum-L∞-norm one, (½, ½), Adam's.

Full-batch runs from w = 0 draw no random number: their seeds are one computation run
again, and their values agree to the last bit. They are judged as that computation: the
interval over identical values has no width, so the verdict is the value against the
claim's tolerance, exact. It still takes ``MIN_SEEDS`` seeds, since their agreement is
what shows the seed plays no part; the value then says "identical in n seeds". Minibatch
runs differ by their order and are judged over the seeds as everywhere else.

- ``reaches``: the final m̄ and g are each ``solution`` ("min_norm" or "l_inf") ±
  ``tolerance``: the 95% Student-t interval over the seeds inside the band holds, outside
  fails.
- ``in_span``: w stays in the span of the inputs x_i = [e_i, 1], whose orthogonal
  complement is (1, …, 1, −1): g = Σ_i w_i = n·m̄ within ``tolerance`` at every recorded
  step; per seed.
- ``same_speed``: every coordinate moves by the same amount: g = m̄ within ``tolerance``
  at every recorded step; per seed.
- ``phase_change``: memorizes first, then moves to the generalizing solution: m̄ comes
  within ``linf_tolerance`` of ½ (or above) at some step, and ends within
  ``min_norm_tolerance`` of 1/(n+1), with g within it of n/(n+1); per seed. A run that
  ends at the minimum-norm fit without memorizing first fails. One that ends elsewhere
  fails once it has lasted ``decay_times`` time constants of the weight decay, 1/(ηλ)
  steps (decoupled decay shrinks w by 1 − ηλ a step); before that it is undecided, since
  the change the claim expects waits on the decay.
- ``memorizes_less``: ``a``'s final m̄ is below ``b``'s by at least ``margin``: the
  interval of a − b, paired by seed, wholly at or below −margin holds, wholly above fails.
- ``split_from_start``: the memorizers' share m̄/(m̄ + g) at the first recorded step after
  0 is already within ``tolerance`` of its final value: how a run splits between
  memorizing and generalizing is set from the start, not switched late; per seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optlab.analysis.stats import Spread, compare, summarize
from optlab.analysis.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Check,
    Evidence,
    lean,
    missing,
    per_seed,
    seeds_of,
    unless_too_few,
)

SCALARS = ("memorizer_mean", "generalizer")


def min_norm(n: int) -> tuple[float, float]:
    """The minimum-L2-norm fit of n samples as (m̄, g): in the span (g = n·m̄) and fitting
    (m̄ + g = 1), so (1/(n+1), n/(n+1))."""
    return 1 / (n + 1), n / (n + 1)


def l_inf(n: int) -> tuple[float, float]:
    """The minimum-L∞-norm fit as (m̄, g): max(|w_i|, |w_{n+1}|) ≥ ½ when w_i + w_{n+1} = 1,
    with equality only at every weight ½, whatever n."""
    return 0.5, 0.5


SOLUTIONS: dict[str, Callable[[int], tuple[float, float]]] = {"min_norm": min_norm, "l_inf": l_inf}


@dataclass(frozen=True)
class Run:
    """One run's memorizers' mean ``m`` and generalizer ``g`` at each recorded ``step``."""

    seed: int
    n: int  # samples: the number of memorizers
    decay_time: float  # 1/(ηλ) steps, the weight decay's time constant; ∞ without decay
    step: np.ndarray
    m: np.ndarray
    g: np.ndarray

    @property
    def share(self) -> np.ndarray:
        """The memorizers' share m̄/(m̄ + g) at each recorded step after 0 (w = 0 at step 0)."""
        after = self.step > 0
        return self.m[after] / (self.m[after] + self.g[after])


def runs_of(ev: Evidence, experiment: str, case: str) -> list[Run]:
    """The case's runs at the most steps the store holds for it, in seed order."""
    table = ev.runs(experiment, case)
    if table.empty:
        return []
    table = table[table["train.steps"] == table["train.steps"].max()].set_index("id")
    out = []
    for c in ev.curves(experiment, case, "scalars", SCALARS):
        run_id = c["generalizer"]["run_id"].iloc[0]
        if run_id not in table.index:
            continue
        row = table.loc[run_id]
        decay = float(row["optimizer.lr"]) * float(row["optimizer.weight_decay"])
        m, g = (c[name].set_index("step")["value"] for name in SCALARS)
        out.append(
            Run(
                int(row["train.seed"]),
                int(row["task.samples"]),
                1 / decay if decay > 0 else math.inf,
                m.index.to_numpy(),
                m.to_numpy(float),
                g.reindex(m.index).to_numpy(float),
            )
        )
    return sorted(out, key=lambda r: r.seed)


def _absent(ev: Evidence, part: dict, case: str) -> Check:
    if ev.runs(part["experiment"], case).empty:
        return missing(case)
    return missing(f"{case} {', '.join(SCALARS)}", "not recorded (split scalars)")


def _identical(values: Sequence[float]) -> bool:
    """Values of several seeds that agree to the last bit: one deterministic computation."""
    return len(values) > 1 and len(set(values)) == 1


def _of_seeds(values: Sequence[float]) -> str:
    return f", identical in {len(values)} seeds" if _identical(values) else ""


def _band(label: str, x: Sequence[float], target: float, tolerance: float) -> Check:
    """The mean of ``x`` (one value per seed) inside target ± tolerance, by its t interval."""
    s = summarize(x)
    lo, hi = target - tolerance, target + tolerance

    def inside(a: float, b: float) -> str | None:
        return HOLDS if lo <= a and b <= hi else FAILS if b < lo or a > hi else None

    leaning, gap = lean(s.mean, [lo, hi], inside)
    band = f"(target {target:.5f} ± {tolerance:g})"
    shown = f"{s.mean:.5f}" if _identical(x) else f"{s.mean:.5f} [{s.lo:.5f}, {s.hi:.5f}]"
    check = Check(
        f"{label} {shown} n={s.n} {band}{_of_seeds(x)}",
        inside(s.lo, s.hi) or INCONCLUSIVE,
        method="t",
        leaning=leaning,
        gap=gap,
        spread=Spread(s.std if s.n > 1 else math.nan),
    )
    return unless_too_few(check, s.n, f"{label} {s.mean:.5f} {band}")


def _reaches(ev: Evidence, part: dict) -> list[Check]:
    case, solution, tolerance = part["case"], part["solution"], part["tolerance"]
    runs = runs_of(ev, part["experiment"], case)
    if not runs:
        return [_absent(ev, part, case)]
    targets = SOLUTIONS[solution](runs[0].n)
    finals = ([r.m[-1] for r in runs], [r.g[-1] for r in runs])
    labels = (f"{case} memorizers' mean", f"{case} generalizer")
    return [
        _band(f"{label} at step {runs[0].step[-1]:,}", x, target, tolerance)
        for label, x, target in zip(labels, finals, targets, strict=True)
    ]


def _tracks(ev: Evidence, part: dict, ratio: Callable[[Run], int], what: str) -> list[Check]:
    """Per seed: |g − ratio·m̄| ≤ ``tolerance`` at every recorded step."""
    case, tolerance = part["case"], part["tolerance"]
    runs = runs_of(ev, part["experiment"], case)
    if not runs:
        return [_absent(ev, part, case)]
    worst = [float(np.abs(r.g - ratio(r) * r.m).max()) for r in runs]
    largest = f"largest {max(worst):.2g}{_of_seeds(worst)}"
    return per_seed([w <= tolerance for w in worst], f"{case}: {what} ≤ {tolerance:g} ({largest})")


def _in_span(ev: Evidence, part: dict) -> list[Check]:
    return _tracks(ev, part, lambda r: r.n, "|g − n·m̄| at every step")


def _same_speed(ev: Evidence, part: dict) -> list[Check]:
    return _tracks(ev, part, lambda r: 1, "|g − m̄| at every step")


def _phase_change(ev: Evidence, part: dict) -> list[Check]:
    case = part["case"]
    linf, near, times = part["linf_tolerance"], part["min_norm_tolerance"], part["decay_times"]
    runs = runs_of(ev, part["experiment"], case)
    if not runs:
        return [_absent(ev, part, case)]
    m_star, g_star = min_norm(runs[0].n)

    def outcome(r: Run) -> bool | None:
        memorized = r.m.max() >= 0.5 - linf
        if abs(r.m[-1] - m_star) <= near and abs(r.g[-1] - g_star) <= near:
            return bool(memorized)  # generalizes: a phase change only if it memorized first
        if r.step[-1] >= times * r.decay_time:
            return False  # long enough for the decay to have moved it, and it has not
        return None

    end, decay_time = runs[0].step[-1], runs[0].decay_time
    peaks, ends = [r.m.max() for r in runs], [(r.m[-1], r.g[-1]) for r in runs]
    value = (
        f"{case} judged at step {end:,} = {end / decay_time:.3g}/(ηλ): m̄ peaks at "
        f"{np.mean(peaks):.4f} (memorized: ≥ {0.5 - linf:g}), ends at m̄ {np.mean(ends, 0)[0]:.4f}"
        f", g {np.mean(ends, 0)[1]:.4f} (min-L2 {m_star:.4f}, {g_star:.4f} ± {near:g})"
        f"{_of_seeds(peaks)}"
    )
    outcomes = [outcome(r) for r in runs]
    if None in outcomes:
        wait = f"runs of {times * decay_time:,.0f} steps ({times:g}/(ηλ))"
        return [Check(f"{value}; not at the min-L2 fit yet, a fail needs {wait}", INCONCLUSIVE)]
    return per_seed(outcomes, value + "; memorizes, then generalizes,")


def _memorizes_less(ev: Evidence, part: dict) -> list[Check]:
    exp, a, b, margin = part["experiment"], part["a"], part["b"], part["margin"]
    sides = [runs_of(ev, exp, case) for case in (a, b)]
    for case, runs in zip((a, b), sides, strict=True):
        if not runs:
            return [_absent(ev, part, case)]
    x, y = (pd.Series({r.seed: r.m[-1] for r in runs}) for runs in sides)
    e, label = compare(x, y), f"final m̄ {a} − {b}"

    def inside(lo: float, hi: float) -> str | None:
        return HOLDS if hi <= -margin else FAILS if lo > -margin else None

    leaning, gap = lean(e.mean, [-margin], inside)
    check = Check(
        f"{label} = {e.mean:+.4f} [{e.lo:+.4f}, {e.hi:+.4f}] {seeds_of(e)} (≤ −{margin:g})",
        inside(e.lo, e.hi) or INCONCLUSIVE,
        method=e.method,
        leaning=leaning,
        gap=gap,
        spread=e.spread,
    )
    return [unless_too_few(check, e.n, f"{label} = {e.mean:+.4f} {e.method}")]


def _split_from_start(ev: Evidence, part: dict) -> list[Check]:
    case, tolerance = part["case"], part["tolerance"]
    runs = runs_of(ev, part["experiment"], case)
    if not runs:
        return [_absent(ev, part, case)]
    first, last = [r.share[0] for r in runs], [r.share[-1] for r in runs]
    at = int(runs[0].step[runs[0].step > 0][0])
    what = (
        f"{case}: memorizers' share at step {at:,} ({np.mean(first):.3f}) within {tolerance:g} "
        f"of its final {np.mean(last):.3f}"
    )
    return per_seed([abs(f - s) <= tolerance for f, s in zip(first, last, strict=True)], what)


RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {
    "reaches": _reaches,
    "in_span": _in_span,
    "same_speed": _same_speed,
    "phase_change": _phase_change,
    "memorizes_less": _memorizes_less,
    "split_from_start": _split_from_start,
}
