"""The paper's claims as data, and the rules that decide them from the store.

A claim names its source, the paper's figure (where it gives one) and a rule, or
``rule = "all"`` with ``parts`` that must all hold. Rules read the tuned runs of each
case (``optlab.analysis.cells``), one value per seed:

- ``approx``: the mean of ``metric`` in ``case`` is ``target`` ± ``tolerance``. Holds when
  the 95% bootstrap interval lies inside that band, fails when it lies outside.
- ``better``: ``a`` beats each case in ``b`` on ``metric`` (accuracy: higher, loss: lower);
  Welch's test, Holm-corrected over every test in the table.
- ``similar``: ``a`` and each of ``b`` differ by less than ``margin``: the interval of the
  difference inside ±margin holds, outside fails.
- ``worse_by``: ``a`` is worse than ``b`` by at least ``margin``: judged on the interval.
- ``trend``: ``metric`` rises (``direction = "increasing"``) or falls along ``cases``
  placed at ``x`` (log2 of x when ``log2 = true``): the least-squares slope over all
  seeds and its t test, Holm-corrected.
- ``grows_linearly``: a tensor statistic (e.g. ``final.norm/mean``) rises over training with
  a straight-line fit of R² ≥ ``min_r2``, in every seed (fails when most seeds do not).
- ``shrinks``: a tensor statistic ends below where it started, in every seed.
- ``settles_more``: ``a``'s runs have a larger share of settled tensors than ``b``'s
  (``optlab.analysis.convergence``); Welch's test, Holm-corrected.

Verdicts: holds, fails, or inconclusive (the interval straddles, the test is not
significant at α = 0.05 after correction, or the store lacks the runs).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from optlab.analysis import convergence
from optlab.analysis.cells import tuned_runs
from optlab.analysis.stats import difference_ci, holm, linear_fit, slope_test, summarize, welch
from optlab.store import Store

ALPHA = 0.05
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
CLAIMS_FILE = Path(__file__).parent.parent / "catalog" / "claims" / "paper.toml"


@dataclass
class Check:
    """One decided piece of a claim: what was measured, and either a verdict or a test."""

    value: str
    verdict: str | None = None  # decided by an interval; None when a test decides
    p: float | None = None
    effect_sign: int = 0  # +1: in the claimed direction, −1: against it
    p_adjusted: float | None = None

    def decide(self) -> str:
        if self.verdict is not None:
            return self.verdict
        if self.p_adjusted is None or self.p_adjusted >= ALPHA or self.effect_sign == 0:
            return INCONCLUSIVE
        return HOLDS if self.effect_sign > 0 else FAILS


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

    def values(self, experiment: str, case: str, metric: str) -> np.ndarray:
        runs = self.runs(experiment, case)
        return runs[metric].to_numpy(dtype=float) if not runs.empty else np.array([])

    def series(self, experiment: str, case: str, split: str, name: str) -> list[pd.DataFrame]:
        """Per seed, the (step, value) series of one recorded metric."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return []
        m = self.store.metrics(list(runs["id"]), split=split)
        return [g for _, g in m[m["name"] == name].groupby("run_id")]

    def settled_share(self, experiment: str, case: str) -> np.ndarray:
        """Per seed, the share of parameter tensors whose mean has settled."""
        runs = self.runs(experiment, case)
        if runs.empty:
            return np.array([])
        convergence.record(self.store, list(runs["id"]))
        return np.array(
            [
                s["value"].iloc[-1]
                for s in self.series(experiment, case, "convergence", "settled_share")
            ]
        )


def _higher_is_better(metric: str) -> bool:
    return "loss" not in metric


def _missing(what: str, why: str = "no runs in the store") -> Check:
    return Check(f"{what}: {why}", INCONCLUSIVE)


def _fmt(s) -> str:
    return f"{s.mean:.4f} [{s.lo:.4f}, {s.hi:.4f}] n={s.n}"


def _approx(ev: Evidence, part: dict) -> list[Check]:
    x = ev.values(part["experiment"], part["case"], part["metric"])
    if len(x) == 0:
        return [_missing(part["case"])]
    s, lo, hi = summarize(x), part["target"] - part["tolerance"], part["target"] + part["tolerance"]
    verdict = HOLDS if lo <= s.lo and s.hi <= hi else FAILS if s.hi < lo or s.lo > hi else None
    return [Check(f"{part['case']} {_fmt(s)}", verdict or INCONCLUSIVE)]


def _pairs(
    ev: Evidence,
    part: dict,
    least: int,
    check: Callable[[str, np.ndarray, np.ndarray, int], Check],
) -> list[Check]:
    """``check(label, a's values, b's values, sign)`` for ``a`` against each case of ``b``,
    sign = +1 where higher ``metric`` is better; a missing check where a side has fewer
    than ``least`` seeds."""
    exp, metric, a = part["experiment"], part["metric"], part["a"]
    sign = 1 if _higher_is_better(metric) else -1
    checks = []
    for b in _as_list(part["b"]):
        x, y, label = ev.values(exp, a, metric), ev.values(exp, b, metric), f"{a} − {b}"
        enough = min(len(x), len(y)) >= least
        checks.append(check(label, x, y, sign) if enough else _missing(label))
    return checks


def _difference(label: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, str]:
    """mean(x) − mean(y), its bootstrap interval, and the text that quotes them."""
    lo, hi = difference_ci(x, y)
    diff = x.mean() - y.mean()
    return diff, lo, hi, f"{label} = {diff:+.4f} [{lo:+.4f}, {hi:+.4f}] n={len(x)}/{len(y)}"


def _better(ev: Evidence, part: dict) -> list[Check]:
    def check(label: str, x: np.ndarray, y: np.ndarray, sign: int) -> Check:
        diff, _, _, value = _difference(label, x, y)
        p = welch(x, y)[2]
        return Check(f"{value} p={p:.2g}", p=p, effect_sign=int(np.sign(diff * sign)))

    return _pairs(ev, part, 2, check)


def _band(ev: Evidence, part: dict, inside: Callable[[float, float], str | None]) -> list[Check]:
    """Judge the interval of a − b, oriented so that better is positive, with ``inside``."""

    def check(label: str, x: np.ndarray, y: np.ndarray, sign: int) -> Check:
        _, lo, hi, value = _difference(label, x, y)
        return Check(value, inside(*sorted((sign * lo, sign * hi))) or INCONCLUSIVE)

    return _pairs(ev, part, 1, check)


def _similar(ev: Evidence, part: dict) -> list[Check]:
    m = part["margin"]
    return _band(
        ev,
        part,
        lambda lo, hi: HOLDS if -m < lo and hi < m else FAILS if hi < -m or lo > m else None,
    )


def _worse_by(ev: Evidence, part: dict) -> list[Check]:
    m = part["margin"]  # a − b, oriented so that better is positive, must be ≤ −margin
    return _band(ev, part, lambda lo, hi: HOLDS if hi <= -m else FAILS if lo > -m else None)


def _trend(ev: Evidence, part: dict) -> list[Check]:
    xs, ys = [], []
    for case, x in zip(part["cases"], part["x"], strict=True):
        values = ev.values(part["experiment"], case, part["metric"])
        x = math.log2(x) if part.get("log2") else x
        xs += [x] * len(values)
        ys += list(values)
    if len(set(xs)) < 2 or len(ys) < 3:
        return [_missing(", ".join(part["cases"]))]
    slope, p = slope_test(xs, ys)
    want = 1 if part["direction"] == "increasing" else -1
    unit = "per doubling" if part.get("log2") else "per step of x"
    value = f"slope {slope:+.4g} {unit} of {part['metric']}, p={p:.2g} over {len(ys)} runs"
    return [Check(value, p=p, effect_sign=int(np.sign(slope) * want))]


def _per_seed(ev: Evidence, part: dict, test: Callable[[pd.DataFrame], bool], what: str):
    series = ev.series(part["experiment"], part["case"], "params", part["tensor"])
    if not series:
        return [_missing(f"{part['case']} {part['tensor']}", "not recorded (the params probe)")]
    passed = sum(test(s) for s in series)
    verdict = HOLDS if passed == len(series) else FAILS if passed <= len(series) / 2 else None
    return [
        Check(f"{part['tensor']} {what} in {passed}/{len(series)} seeds", verdict or INCONCLUSIVE)
    ]


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
    if len(x) < 2 or len(y) < 2:
        return [_missing(f"settling of {a}, {b}", "needs two seeds each and the params probe")]
    _, _, p = welch(x, y)
    value = f"settled share {a} {x.mean():.2f} vs {b} {y.mean():.2f}, p={p:.2g}"
    return [Check(value, p=p, effect_sign=int(np.sign(x.mean() - y.mean())))]


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
        "Intervals: 95% percentile bootstrap over seeds of the tuned runs; tests: Welch "
        f"(means) and least-squares slope, Holm-corrected over {tests} tests at α = {ALPHA}."
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
    return verdicts, len(tests)
