"""The paper's claims as data, and the rules that decide them from the store.

Each claim quotes the sentence it tests (``quote``, the source's own words, cited by name in
``source``), gives the paper's figure where it has one, and names a rule, or ``rule = "all"``
with ``parts`` that must all hold; each tolerance a rule uses is written in the claim. Rules
read the tuned runs of each case (``optlab.analysis.cells``), one value per training seed.
Two cases are compared seed by seed (runs with the same training seed share their data
stream and, where shapes match, their initial draws), over the seeds both have; Welch's
test where they share fewer than three (``optlab.analysis.stats.compare``). Each check
says which.

- ``approx``: the mean of ``metric`` in ``case`` is ``target`` ± ``tolerance``. Holds when
  the 95% Student-t interval lies inside that band, fails when it lies outside.
- ``at_least``: the mean of ``metric`` in ``case`` is at least ``min``: judged on the interval.
- ``better``: ``a`` beats each case in ``b`` on ``metric`` (accuracy: higher, loss: lower);
  the paired t test (Welch's where unpaired), Holm-corrected over every test in the table.
- ``similar``: ``a`` and each of ``b`` differ by less than ``margin``: the interval of the
  difference inside ±margin holds, outside fails.
- ``worse_by``: ``a`` is worse than ``b`` by at least ``margin``: judged on the interval.
- ``differs_by``: ``a`` − ``b`` (oriented so that better is positive) is ``target`` ±
  ``tolerance``: judged on the interval, as ``approx``.
- ``trend``: ``metric`` rises (``direction = "increasing"``) or falls along ``cases``
  placed at ``x`` (log2 of x when ``log2 = true``): the mean of the per-seed least-squares
  slopes and its t test (where the seeds are not shared: one slope over all runs),
  Holm-corrected.
- ``settles_more``: ``a``'s runs have a larger share of settled tensors than ``b``'s
  (``optlab.analysis.convergence``); paired t test, Holm-corrected.
- Rules over training curves, decided per seed (``optlab.analysis.curves``):
  ``grows_linearly``, ``shrinks``, ``grows``, ``keeps_moving``, ``approaches``,
  ``unsettled``, ``jump``, ``climbs``; and ``noisier``, a paired test.

Verdicts: holds, fails, or inconclusive (the interval straddles, the test is not
significant at α = 0.05 after correction, fewer than three seeds, or the store lacks the
runs). Beside each verdict, ``seeds_needed``: how many seeds would decide it at the
observed effect and spread (``Check.project``, ``Verdict.seeds_needed``).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from optlab.analysis import curves, invariance, kfac, solutions
from optlab.analysis.stats import (
    MIN_SEEDS,
    Estimate,
    Spread,
    compare,
    holm,
    linear_fit,
    one_sample,
    pooled_slope,
    shared_seeds,
    summarize,
)
from optlab.analysis.verdicts import (
    ALPHA,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Check,
    Evidence,
    Verdict,
    greater,
    higher_is_better,
    lean,
    missing,
    seeds_of,
    tested,
    too_few,
    undecided,
    unless_too_few,
)
from optlab.store import Store

CLAIMS_DIR = Path(__file__).parent.parent / "catalog" / "claims"
CLAIMS_FILE = CLAIMS_DIR / "paper.toml"


def _band(ev: Evidence, part: dict, lo: float, hi: float) -> list[Check]:
    """The mean of ``metric`` in ``case`` inside [lo, hi] (an edge may be infinite)."""
    x = ev.values(part["experiment"], part["case"], part["metric"])
    if len(x) == 0:
        return [missing(part["case"])]
    s = summarize(x)

    def inside(a: float, b: float) -> str | None:
        return HOLDS if lo <= a and b <= hi else FAILS if b < lo or a > hi else None

    leaning, gap = lean(s.mean, [e for e in (lo, hi) if math.isfinite(e)], inside)
    spread = Spread(s.std if s.n > 1 else math.nan)
    value = f"{part['case']} {part['metric']} {s.mean:.4f} [{s.lo:.4f}, {s.hi:.4f}] n={s.n}"
    check = Check(
        value,
        inside(s.lo, s.hi) or INCONCLUSIVE,
        method="t",
        leaning=leaning,
        gap=gap,
        spread=spread,
    )
    if s.n < MIN_SEEDS:
        value = f"{part['case']} {part['metric']} {s.mean:.4f}: {too_few(s.n)}"
        return [undecided(check, value)]
    return [check]


def _approx(ev: Evidence, part: dict) -> list[Check]:
    t, tol = part["target"], part["tolerance"]
    return _band(ev, part, t - tol, t + tol)


def _at_least(ev: Evidence, part: dict) -> list[Check]:
    return _band(ev, part, part["min"], math.inf)


def _pairs(ev: Evidence, part: dict, check: Callable[[str, Estimate, int], Check]) -> list[Check]:
    """``check(label, estimate of a − b, sign)`` for ``a`` against each case of ``b``, paired
    by seed where it can be, sign = +1 where higher ``metric`` is better; a missing check
    where a side has no runs, an inconclusive one where it has fewer than ``MIN_SEEDS``."""
    exp, metric, a = part["experiment"], part["metric"], part["a"]
    sign = 1 if higher_is_better(metric) else -1
    checks = []
    for b in _as_list(part["b"]):
        x, y, label = ev.values(exp, a, metric), ev.values(exp, b, metric), f"{a} − {b}"
        if min(len(x), len(y)) == 0:
            checks.append(missing(label))
            continue
        e = compare(x, y)
        checks.append(
            unless_too_few(check(label, e, sign), e.n, f"{label} = {e.mean:+.4f} {e.method}")
        )
    return checks


def _estimate(label: str, e: Estimate) -> str:
    return f"{label} = {e.mean:+.4f} [{e.lo:+.4f}, {e.hi:+.4f}] {seeds_of(e)}"


def _better(ev: Evidence, part: dict) -> list[Check]:
    return _pairs(ev, part, lambda label, e, sign: tested(_estimate(label, e), e, sign))


def _interval(
    ev: Evidence, part: dict, edges: list[float], inside: Callable[[float, float], str | None]
) -> list[Check]:
    """Judge the interval of a − b, oriented so that better is positive, with ``inside``."""

    def check(label: str, e: Estimate, sign: int) -> Check:
        leaning, gap = lean(sign * e.mean, edges, inside)
        verdict = inside(*sorted((sign * e.lo, sign * e.hi))) or INCONCLUSIVE
        fields = {"leaning": leaning, "gap": gap, "spread": e.spread}
        return Check(_estimate(label, e), verdict, method=e.method, **fields)

    return _pairs(ev, part, check)


def _within(lo: float, hi: float) -> Callable[[float, float], str | None]:
    """Holds when the interval [a, b] lies strictly inside (lo, hi), fails when outside."""
    return lambda a, b: HOLDS if lo < a and b < hi else FAILS if b < lo or a > hi else None


def _similar(ev: Evidence, part: dict) -> list[Check]:
    m = part["margin"]
    return _interval(ev, part, [-m, m], _within(-m, m))


def _differs_by(ev: Evidence, part: dict) -> list[Check]:
    lo, hi = part["target"] - part["tolerance"], part["target"] + part["tolerance"]
    return _interval(ev, part, [lo, hi], _within(lo, hi))


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
        return [missing(", ".join(absent or cases))]
    shared = shared_seeds(*ys)
    if shared is not None:
        e = one_sample([linear_fit(xs, [y[s] for y in ys])[0] for s in shared], "paired")
        over = f"per-seed slopes, paired n={e.n}"
    else:
        e = pooled_slope(xs, [y.to_numpy() for y in ys])
        over = f"one slope over {sum(len(y) for y in ys)} runs (seeds not shared)"
    want = 1 if part["direction"] == "increasing" else -1
    unit = "per doubling" if part.get("log2") else "per step of x"
    check = tested(
        f"slope {e.mean:+.4g} [{e.lo:+.4g}, {e.hi:+.4g}] {unit} of {metric}, {over},", e, want
    )
    return [unless_too_few(check, e.n, f"slope {e.mean:+.4g} {unit} of {metric}, {over}")]


def _settles_more(ev: Evidence, part: dict) -> list[Check]:
    exp, a, b = part["experiment"], part["a"], part["b"]
    x, y = ev.settled_share(exp, a), ev.settled_share(exp, b)
    if len(x) == 0 or len(y) == 0:
        absent = any(ev.runs(exp, case).empty for case in (a, b))
        why = "no runs in the store" if absent else "needs the params probe"
        return [missing(f"settling of {a}, {b}", why)]
    e, label = compare(x, y), f"settled share {a} {x.mean():.2f} vs {b} {y.mean():.2f}"
    return greater(label, e)


RULES: dict[str, Callable[[Evidence, dict], list[Check]]] = {
    "approx": _approx,
    "at_least": _at_least,
    "better": _better,
    "similar": _similar,
    "worse_by": _worse_by,
    "differs_by": _differs_by,
    "trend": _trend,
    "settles_more": _settles_more,
    **curves.RULES,
    **solutions.RULES,
    **invariance.RULES,
    **kfac.RULES,
}
FILE_NUMBER = re.compile(r"^\s*(seed\s*)?\d{3}\b")  # "002 §3.3.1": cite sources by name


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def load_claims(path: Path | None = None) -> list[dict]:
    """The claims of ``path``, or of every catalog claims file (the paper's, the theory's);
    each must quote its sentence, cite its source by name and use known rules."""
    paths = [Path(path)] if path is not None else sorted(CLAIMS_DIR.glob("*.toml"))
    claims = [
        {**c, "catalog": p.stem} for p in paths for c in tomllib.loads(p.read_text())["claims"]
    ]
    for claim in claims:
        for key in ("quote", "source"):
            if not str(claim.get(key, "")).strip():
                raise ValueError(f"claims {claim['id']}: {key} is missing; every claim needs one")
        if FILE_NUMBER.match(claim["source"]):
            raise ValueError(
                f"claims {claim['id']}: source {claim['source']!r} cites a file number; "
                'name the document, e.g. "Yu (2022) §3.3.1" or "AdamWAnalysis README, Modeling"'
            )
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
        "rule's threshold (a test's: zero, at the Bonferroni level α/m); – where none would. "
        "Curve rules decide per seed: hold when every seed passes, fail when at most half do."
    )


def experiments_of(claim: dict) -> set[str]:
    return {part.get("experiment", claim.get("experiment")) for part in claim.get("parts", [claim])}


def cases_named(claim: dict, cases: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (experiment, case) pairs among ``cases`` that ``claim`` names in any field of its
    parts (``a``, ``b``, ``case``, ``cases``, a rule's own such as ``graft``): what a slice of
    a sweep must hold for the claim to be judged on it."""
    named = set()
    for part in claim.get("parts", [claim]):
        merged = {**claim, **part}
        experiment = merged.get("experiment")
        for value in merged.values():
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and (experiment, name) in cases:
                    named.add((experiment, name))
    return named


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
        v.quote = claim.get("quote", "")  # judge() also takes claims without one (tests)
        v.catalog = claim.get("catalog", "")
        for part in claim.get("parts", [claim]):
            defaults = {k: claim[k] for k in ("experiment", "metric", "case") if k in claim}
            v.checks += RULES[part["rule"]](ev, {**defaults, **part})
        verdicts.append(v)
    tests = [c for v in verdicts for c in v.checks if c.p is not None]
    for check, adjusted in zip(tests, holm([c.p for c in tests]), strict=True):
        check.p_adjusted = adjusted
    for check in (c for v in verdicts for c in v.checks):
        check.project(len(tests))
    return verdicts, len(tests)


__all__ = [
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "RULES",
    "Check",
    "Verdict",
    "cases_named",
    "experiments_of",
    "judge",
    "load_claims",
    "method_note",
]
