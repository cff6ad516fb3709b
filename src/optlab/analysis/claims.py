"""The paper's claims as data, and the rules that decide them from the store.

A claim names its source, the paper's figure (where it gives one) and a rule, or
``rule = "all"`` with ``parts`` that must all hold. Rules read the tuned runs of each
case (``optlab.analysis.cells``), one value per training seed. Two cases are compared
seed by seed (runs with the same training seed share their data stream and, where
shapes match, their initial draws), over the seeds both have; Welch's test where they
share fewer than three (``optlab.analysis.stats.compare``). Each check says which.

- ``approx``: the mean of ``metric`` in ``case`` is ``target`` ± ``tolerance``. Holds when
  the 95% Student-t interval lies inside that band, fails when it lies outside.
- ``better``: ``a`` beats each case in ``b`` on ``metric`` (accuracy: higher, loss: lower);
  the paired t test (Welch's where unpaired), Holm-corrected over every test in the table.
- ``similar``: ``a`` and each of ``b`` differ by less than ``margin``: the interval of the
  difference inside ±margin holds, outside fails.
- ``worse_by``: ``a`` is worse than ``b`` by at least ``margin``: judged on the interval.
- ``trend``: ``metric`` rises (``direction = "increasing"``) or falls along ``cases``
  placed at ``x`` (log2 of x when ``log2 = true``): the mean of the per-seed least-squares
  slopes and its t test (where the seeds are not shared: one slope over all runs),
  Holm-corrected.
- ``grows_linearly``: a tensor statistic (e.g. ``final.norm/mean``) rises over training with
  a straight-line fit of R² ≥ ``min_r2``, in every seed (fails when most seeds do not).
- ``shrinks``: a tensor statistic ends below where it started, in every seed.
- ``settles_more``: ``a``'s runs have a larger share of settled tensors than ``b``'s
  (``optlab.analysis.convergence``); paired t test, Holm-corrected.

Verdicts: holds, fails, or inconclusive (the interval straddles, the test is not
significant at α = 0.05 after correction, fewer than three seeds, or the store lacks the
runs). Beside each verdict, ``seeds_needed``: how many seeds would decide it at the
observed effect and spread (``Check.project``, ``Verdict.seeds_needed``).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from optlab.analysis import convergence
from optlab.analysis.cells import tuned_runs
from optlab.analysis.stats import (
    LEVEL,
    MIN_SEEDS,
    Estimate,
    Spread,
    compare,
    holm,
    linear_fit,
    one_sample,
    pooled_slope,
    seeds_needed,
    shared_seeds,
    summarize,
)
from optlab.store import Store

ALPHA = 0.05
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
CLAIMS_FILE = Path(__file__).parent.parent / "catalog" / "claims" / "paper.toml"


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
    id: str
    text: str
    source: str
    paper: str
    checks: list[Check] = field(default_factory=list)

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
        runs = self.runs(experiment, case)
        if runs.empty:
            return []
        m = self.store.metrics(list(runs["id"]), split=split)
        return [g for _, g in m[m["name"] == name].groupby("run_id")]

    def settled_share(self, experiment: str, case: str) -> pd.Series:
        """Per seed, the share of parameter tensors whose mean has settled, indexed by seed."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return pd.Series(dtype=float)
        convergence.record(self.store, list(runs["id"]))
        seed = dict(zip(runs["id"], runs["train.seed"], strict=True))
        series = self.series(experiment, case, "convergence", "settled_share")
        return pd.Series(
            [s["value"].iloc[-1] for s in series], index=[seed[s["run_id"].iloc[0]] for s in series]
        )


def _higher_is_better(metric: str) -> bool:
    return "loss" not in metric


def _missing(what: str, why: str = "no runs in the store") -> Check:
    return Check(f"{what}: {why}", INCONCLUSIVE)


def _too_few(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}; at least {MIN_SEEDS} needed"


def _undecided(check: Check, value: str) -> Check:
    """``check`` from too few seeds: no interval, no test, no verdict; its estimate and spread
    still tell how many seeds would decide it."""
    return replace(check, value=value, verdict=INCONCLUSIVE, p=None)


def _lean(mean: float, edges: list[float], inside: Callable[[float, float], str | None]):
    """The verdict an interval shrunk to the mean would get, and the gap to the nearest edge."""
    return inside(mean, mean), min(abs(mean - e) for e in edges)


def _approx(ev: Evidence, part: dict) -> list[Check]:
    x = ev.values(part["experiment"], part["case"], part["metric"])
    if len(x) == 0:
        return [_missing(part["case"])]
    s, lo, hi = summarize(x), part["target"] - part["tolerance"], part["target"] + part["tolerance"]

    def inside(a: float, b: float) -> str | None:
        return HOLDS if lo <= a and b <= hi else FAILS if b < lo or a > hi else None

    leaning, gap = _lean(s.mean, [lo, hi], inside)
    spread = Spread(s.std if s.n > 1 else math.nan)
    value = f"{part['case']} {s.mean:.4f} [{s.lo:.4f}, {s.hi:.4f}] n={s.n}"
    check = Check(
        value,
        inside(s.lo, s.hi) or INCONCLUSIVE,
        method="t",
        leaning=leaning,
        gap=gap,
        spread=spread,
    )
    if s.n < MIN_SEEDS:
        return [_undecided(check, f"{part['case']} {s.mean:.4f}: {_too_few(s.n)}")]
    return [check]


def _seeds(e: Estimate) -> str:
    return f"{e.method} n={e.n_a}" if e.method == "paired" else f"{e.method} n={e.n_a}/{e.n_b}"


def _pairs(ev: Evidence, part: dict, check: Callable[[str, Estimate, int], Check]) -> list[Check]:
    """``check(label, estimate of a − b, sign)`` for ``a`` against each case of ``b``, paired
    by seed where it can be, sign = +1 where higher ``metric`` is better; a missing check
    where a side has no runs, an inconclusive one where it has fewer than ``MIN_SEEDS``."""
    exp, metric, a = part["experiment"], part["metric"], part["a"]
    sign = 1 if _higher_is_better(metric) else -1
    checks = []
    for b in _as_list(part["b"]):
        x, y, label = ev.values(exp, a, metric), ev.values(exp, b, metric), f"{a} − {b}"
        if min(len(x), len(y)) == 0:
            checks.append(_missing(label))
            continue
        e = compare(x, y)
        checks.append(check(label, e, sign))
        if e.n < MIN_SEEDS:
            checks[-1] = _undecided(
                checks[-1], f"{label} = {e.mean:+.4f} {e.method}: {_too_few(e.n)}"
            )
    return checks


def _quote(label: str, e: Estimate) -> str:
    return f"{label} = {e.mean:+.4f} [{e.lo:+.4f}, {e.hi:+.4f}] {_seeds(e)}"


def _tested(value: str, e: Estimate, sign: int) -> Check:
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


def _better(ev: Evidence, part: dict) -> list[Check]:
    return _pairs(ev, part, lambda label, e, sign: _tested(_quote(label, e), e, sign))


def _interval(
    ev: Evidence, part: dict, edges: list[float], inside: Callable[[float, float], str | None]
) -> list[Check]:
    """Judge the interval of a − b, oriented so that better is positive, with ``inside``."""

    def check(label: str, e: Estimate, sign: int) -> Check:
        leaning, gap = _lean(sign * e.mean, edges, inside)
        verdict = inside(*sorted((sign * e.lo, sign * e.hi))) or INCONCLUSIVE
        fields = {"leaning": leaning, "gap": gap, "spread": e.spread}
        return Check(_quote(label, e), verdict, method=e.method, **fields)

    return _pairs(ev, part, check)


def _similar(ev: Evidence, part: dict) -> list[Check]:
    m = part["margin"]
    return _interval(
        ev,
        part,
        [-m, m],
        lambda lo, hi: HOLDS if -m < lo and hi < m else FAILS if hi < -m or lo > m else None,
    )


def _worse_by(ev: Evidence, part: dict) -> list[Check]:
    m = part["margin"]  # a − b, oriented so that better is positive, must be ≤ −margin
    return _interval(
        ev, part, [-m], lambda lo, hi: HOLDS if hi <= -m else FAILS if lo > -m else None
    )


def _trend(ev: Evidence, part: dict) -> list[Check]:
    exp, metric, cases = part["experiment"], part["metric"], part["cases"]
    xs = [math.log2(x) if part.get("log2") else x for x in part["x"]]
    ys = [ev.values(exp, case, metric) for case in cases]
    absent = [case for case, y in zip(cases, ys, strict=True) if len(y) == 0]
    if absent or len(set(xs)) < 2 or sum(len(y) for y in ys) < 3:
        return [_missing(", ".join(absent or cases))]
    shared = shared_seeds(*ys)
    if shared is not None:
        e = one_sample([linear_fit(xs, [y[s] for y in ys])[0] for s in shared], "paired")
        over = f"per-seed slopes, paired n={e.n}"
    else:
        e = pooled_slope(xs, [y.to_numpy() for y in ys])
        over = f"one slope over {sum(len(y) for y in ys)} runs (seeds not shared)"
    want = 1 if part["direction"] == "increasing" else -1
    unit = "per doubling" if part.get("log2") else "per step of x"
    check = _tested(
        f"slope {e.mean:+.4g} [{e.lo:+.4g}, {e.hi:+.4g}] {unit} of {metric}, {over},", e, want
    )
    if e.n < MIN_SEEDS:
        return [
            _undecided(check, f"slope {e.mean:+.4g} {unit} of {metric}, {over}: {_too_few(e.n)}")
        ]
    return [check]


def _per_seed(ev: Evidence, part: dict, test: Callable[[pd.DataFrame], bool], what: str):
    """Holds when every seed passes, fails when at most half do; at the observed share, that
    takes ``MIN_SEEDS`` seeds when it decides, and no number of seeds when it does not."""
    series = ev.series(part["experiment"], part["case"], "params", part["tensor"])
    if not series:
        return [_missing(f"{part['case']} {part['tensor']}", "not recorded (the params probe)")]
    n, passed = len(series), sum(test(s) for s in series)
    leaning = HOLDS if passed == n else FAILS if passed <= n / 2 else None
    value = f"{part['tensor']} {what} in {passed}/{n} seeds"
    check = Check(value, leaning or INCONCLUSIVE, method="per seed", leaning=leaning)
    check.seeds_needed = MIN_SEEDS if leaning else None
    if n < MIN_SEEDS:
        return [_undecided(check, f"{value}: {_too_few(n)}")]
    return [check]


def _grows_linearly(ev: Evidence, part: dict) -> list[Check]:
    def linear(s: pd.DataFrame) -> bool:
        slope, _, r2 = linear_fit(s["step"], s["value"])
        return slope > 0 and r2 >= part["min_r2"]

    return _per_seed(ev, part, linear, f"grows with R² ≥ {part['min_r2']}")


def _shrinks(ev: Evidence, part: dict) -> list[Check]:
    return _per_seed(ev, part, lambda s: s["value"].iloc[-1] < s["value"].iloc[0], "shrinks")


def _settles_more(ev: Evidence, part: dict) -> list[Check]:
    exp, a, b = part["experiment"], part["a"], part["b"]
    x, y = ev.settled_share(exp, a), ev.settled_share(exp, b)
    if len(x) == 0 or len(y) == 0:
        return [_missing(f"settling of {a}, {b}", "needs the params probe")]
    e, label = compare(x, y), f"settled share {a} {x.mean():.2f} vs {b} {y.mean():.2f}"
    check = _tested(f"{label}, {_seeds(e)},", e, 1)
    if e.n < MIN_SEEDS:
        return [_undecided(check, f"{label}, {e.method}: {_too_few(e.n)}")]
    return [check]


RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {
    "approx": _approx,
    "better": _better,
    "similar": _similar,
    "worse_by": _worse_by,
    "trend": _trend,
    "grows_linearly": _grows_linearly,
    "shrinks": _shrinks,
    "settles_more": _settles_more,
}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def load_claims(path: Path = CLAIMS_FILE) -> list[dict]:
    claims = tomllib.loads(Path(path).read_text())["claims"]
    for claim in claims:
        for part in claim.get("parts", [claim]):
            if part["rule"] not in RULES:
                raise ValueError(
                    f"claims {claim['id']}: rule {part['rule']!r} is not one of {', '.join(RULES)}"
                )
    return claims


def method_note(tests: int) -> str:
    """How the verdict table's intervals and tests were computed, for the CLI and the report."""
    return (
        f"Intervals: 95% Student-t over the seeds of the tuned runs, none from fewer than "
        f"{MIN_SEEDS}; cases compared per seed over the seeds both have (paired), Welch's "
        "where they share too few; tests: paired t (Welch's) and the mean per-seed slope, "
        f"Holm-corrected over {tests} tests at α = {ALPHA}. Seeds for a verdict: the fewest at "
        "which the t interval's half-width at the observed mean and spread would clear the "
        "rule's threshold (a test's: zero, at the Bonferroni level α/m); – where none would."
    )


def experiments_of(claim: dict) -> set[str]:
    return {part.get("experiment", claim.get("experiment")) for part in claim.get("parts", [claim])}


def judge(
    store: Store, claims: list[dict] | None = None, experiments: set[str] | None = None
) -> tuple[list[Verdict], int]:
    """Each claim's checks and verdict, the tests Holm-corrected together: (verdicts, m).

    With ``experiments``, only the claims about those experiments."""
    ev = Evidence(store)
    verdicts = []
    claims = claims if claims is not None else load_claims()
    if experiments is not None:
        claims = [c for c in claims if experiments_of(c) <= experiments]
    for claim in claims:
        v = Verdict(claim["id"], claim["text"], claim.get("source", ""), claim.get("paper", "-"))
        for part in claim.get("parts", [claim]):
            defaults = {k: claim[k] for k in ("experiment", "metric") if k in claim}
            v.checks += RULES[part["rule"]](ev, {**defaults, **part})
        verdicts.append(v)
    tests = [c for v in verdicts for c in v.checks if c.p is not None]
    for check, adjusted in zip(tests, holm([c.p for c in tests]), strict=True):
        check.p_adjusted = adjusted
    for check in (c for v in verdicts for c in v.checks):
        check.project(len(tests))
    return verdicts, len(tests)
