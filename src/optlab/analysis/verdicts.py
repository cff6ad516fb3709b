"""What the claim rules share: a decided check, a claim's verdict, and the store read once.

A rule (``optlab.analysis.claims``, ``optlab.analysis.curves``) turns what the store holds
into ``Check``s; a claim's ``Verdict`` combines its checks. A check is decided either by an
interval against the rule's threshold (``verdict``), by a Holm-corrected test (``p``), or
per seed (holds when every seed passes, fails when at most half do).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from optlab.analysis import convergence
from optlab.analysis.cells import tuned_runs
from optlab.analysis.stats import (
    LEVEL,
    MIN_SEEDS,
    Estimate,
    Spread,
    seeds_needed,
    shared_seeds,
)
from optlab.store import Store

ALPHA = 0.05
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"


@dataclass
class Check:
    """One decided piece of a claim: what was measured, and either a verdict or a test; how it
    was measured (``method``), the verdict more seeds would reach at the observed effect
    (``leaning``), and how many seeds that would take (``seeds_needed``)."""

    value: str
    verdict: str | None = None  # decided by an interval; None when a test decides
    p: float | None = None
    effect_sign: int = 0  # +1: in the claimed direction, −1: against it
    p_adjusted: float | None = None
    method: str = ""  # "t", "paired", "Welch", "pooled" or "per seed"
    by_test: bool = False  # decided by a Holm-corrected test (when it had the seeds)
    leaning: str | None = None
    gap: float = math.nan  # from the estimate to the rule's threshold (a test's: zero)
    spread: Spread | None = None
    seeds_needed: int | None = None

    def decide(self) -> str:
        if self.verdict is not None:
            return self.verdict
        if self.p_adjusted is None or self.p_adjusted >= ALPHA or self.effect_sign == 0:
            return INCONCLUSIVE
        return HOLDS if self.effect_sign > 0 else FAILS

    def project(self, tests: int) -> None:
        """Set ``seeds_needed`` from the gap and spread (``stats.seeds_needed``): at the 95%
        level for an interval rule; for a test, at 1 − α/m over the table's m tests, the
        Bonferroni level, below which a p survives Holm's correction whatever the others."""
        if self.spread is not None:
            level = 1 - ALPHA / max(tests, 1) if self.by_test else LEVEL
            self.seeds_needed = seeds_needed(self.gap, self.spread, level)


@dataclass
class Verdict:
    """A claim judged: its short ``text``, the ``quote`` it tests (the source's own words,
    cited by ``source``), the paper's figure, and its checks."""

    id: str
    text: str
    source: str
    paper: str
    checks: list[Check] = field(default_factory=list)
    quote: str = ""
    catalog: str = ""  # the claims file it comes from: "paper", "theory"

    @property
    def verdict(self) -> str:
        verdicts = [c.decide() for c in self.checks]
        if not verdicts or INCONCLUSIVE in verdicts and FAILS not in verdicts:
            return INCONCLUSIVE
        return FAILS if FAILS in verdicts else HOLDS

    @property
    def value(self) -> str:
        return "; ".join(c.value for c in self.checks)

    @property
    def seeds_needed(self) -> int | None:
        """The seeds at which the claim would be decided at the observed effects and spreads:
        one check leaning to fail decides it, so the fewest of theirs; else every check must
        hold, so the most of all. None when no number of seeds would (or can be told to)."""
        failing = [c.seeds_needed for c in self.checks if c.leaning == FAILS]
        if any(n is not None for n in failing):
            return min(n for n in failing if n is not None)
        needed = [c.seeds_needed for c in self.checks]
        if not needed or None in needed or any(c.leaning != HOLDS for c in self.checks):
            return None
        return max(needed)


class Evidence:
    """The store, read once per experiment: tuned runs and their metric series."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tuned: dict[str, pd.DataFrame] = {}

    def runs(self, experiment: str, case: str) -> pd.DataFrame:
        if experiment not in self._tuned:
            self._tuned[experiment] = tuned_runs(self.store, experiment)
        runs = self._tuned[experiment]
        return runs[runs["case"] == case] if not runs.empty else runs

    def values(self, experiment: str, case: str, metric: str) -> pd.Series:
        """A case's final ``metric``, one value per run, indexed by the run's training seed."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return pd.Series(dtype=float)
        return pd.Series(runs[metric].to_numpy(dtype=float), index=runs["train.seed"].to_numpy())

    def series(self, experiment: str, case: str, split: str, name: str) -> list[pd.DataFrame]:
        """Per seed, the (step, value) series of one recorded metric."""
        return [c[name] for c in self.curves(experiment, case, split, [name])]

    def curves(
        self, experiment: str, case: str, split: str, names: Sequence[str]
    ) -> list[dict[str, pd.DataFrame]]:
        """Per run that recorded them all, each of ``names``' (step, value) series, by name
        (the frames carry ``run_id``)."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return []
        m = self.store.metrics(list(runs["id"]), split=split)
        m = m[m["name"].isin(list(names))]
        out = []
        for _, run in m.groupby("run_id"):
            by_name = {name: s for name, s in run.groupby("name")}
            if all(name in by_name for name in names):
                out.append(by_name)
        return out

    def measured(
        self, experiment: str, case: str, split: str, name: str, measure: Callable
    ) -> pd.Series:
        """Per run, ``measure(steps, values)`` of one recorded series, indexed by training seed."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return pd.Series(dtype=float)
        seed = dict(zip(runs["id"], runs["train.seed"], strict=True))
        series = self.series(experiment, case, split, name)
        return pd.Series(
            [measure(s["step"].to_numpy(), s["value"].to_numpy(float)) for s in series],
            index=[seed[s["run_id"].iloc[0]] for s in series],
            dtype=float,
        )

    def settled_share(self, experiment: str, case: str) -> pd.Series:
        """Per seed, the share of parameter tensors whose mean has settled, indexed by seed."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return pd.Series(dtype=float)
        convergence.record(self.store, list(runs["id"]))
        return self.measured(experiment, case, "convergence", "settled_share", lambda s, v: v[-1])


def higher_is_better(metric: str) -> bool:
    return "loss" not in metric


def paired_values(
    ev: Evidence, experiment: str, cases: Sequence[str], metric: str, label: str
) -> list[np.ndarray] | Check:
    """Each case's final ``metric`` over the seeds they all have, oriented so that better is
    positive (a loss negated); or, where that cannot be, the missing check that says why."""
    sides = [ev.values(experiment, case, metric) for case in cases]
    if min(len(s) for s in sides) == 0:
        return missing(label)
    seeds = shared_seeds(*sides)
    if seeds is None:
        return missing(label, "not paired by seed (too few shared, or a seed twice in a case)")
    sign = 1 if higher_is_better(metric) else -1
    return [sign * s[seeds].to_numpy(float) for s in sides]


def missing(what: str, why: str = "no runs in the store") -> Check:
    return Check(f"{what}: {why}", INCONCLUSIVE)


def too_few(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}; at least {MIN_SEEDS} needed"


def undecided(check: Check, value: str) -> Check:
    """``check`` from too few seeds: no interval, no test, no verdict; its estimate and spread
    still tell how many seeds would decide it."""
    return replace(check, value=value, verdict=INCONCLUSIVE, p=None)


def unless_too_few(check: Check, n: int, value: str) -> Check:
    """``check``, or from fewer than ``MIN_SEEDS`` seeds ``undecided``, its value ``value``
    and why."""
    return check if n >= MIN_SEEDS else undecided(check, f"{value}: {too_few(n)}")


def lean(mean: float, edges: list[float], inside: Callable[[float, float], str | None]):
    """The verdict an interval shrunk to the mean would get, and the gap to the nearest edge."""
    return inside(mean, mean), min(abs(mean - e) for e in edges)


def seeds_of(e: Estimate) -> str:
    return f"{e.method} n={e.n_a}" if e.method == "paired" else f"{e.method} n={e.n_a}/{e.n_b}"


def tested(value: str, e: Estimate, sign: int) -> Check:
    """A check decided by the test of ``e``'s mean against zero, ``sign`` = +1 where a positive
    mean is the claimed direction; more seeds would lean the way the mean points."""
    effect = int(np.sign(sign * e.mean))
    return Check(
        f"{value} p={e.p:.2g}",
        p=e.p,
        effect_sign=effect,
        method=e.method,
        by_test=True,
        leaning={1: HOLDS, -1: FAILS}.get(effect),
        gap=abs(e.mean),
        spread=e.spread,
    )


def greater(label: str, e: Estimate) -> list[Check]:
    """The check that ``e``'s mean (a minus b, paired or not) is above zero, ``label`` naming
    what was compared; from fewer than ``MIN_SEEDS`` seeds undecided."""
    return [unless_too_few(tested(f"{label}, {seeds_of(e)},", e, 1), e.n, f"{label}, {e.method}")]


def per_seed(passed: Sequence[bool], what: str) -> list[Check]:
    """Holds when every seed passes, fails when at most half do; at the observed share, that
    takes ``MIN_SEEDS`` seeds when it decides, and no number of seeds when it does not."""
    n, k = len(passed), int(sum(passed))
    leaning = HOLDS if k == n else FAILS if k <= n / 2 else None
    value = f"{what} in {k}/{n} seeds"
    check = Check(value, leaning or INCONCLUSIVE, method="per seed", leaning=leaning)
    check.seeds_needed = MIN_SEEDS if leaning else None
    return [unless_too_few(check, n, value)]
