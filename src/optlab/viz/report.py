"""One self-contained HTML report of a store: a section per experiment with its shared config,
a table of final metrics per condition (mean and 95% Student-t interval over seeds,
``optlab.analysis.stats``) and its figures,
embedded as data URIs so that opening the file makes no request. Every string that comes
from a spec or the store is escaped."""

from __future__ import annotations

import base64
import datetime
import html
import math
import tempfile
from pathlib import Path

import pandas as pd

from optlab.analysis.paths import compare_one_path
from optlab.analysis.stats import summarize
from optlab.analysis.verdicts import Verdict
from optlab.store import Store
from optlab.viz.animation import animate_centers, animate_decision_map
from optlab.viz.batches import plot_rules_by_batch, plot_samples
from optlab.viz.curves import LABELS, eval_panels, plot_eval_curves
from optlab.viz.data import (
    SEED,
    ExperimentRecord,
    config_columns,
    distinct,
    experiments,
    load_experiment_record,
)
from optlab.viz.gradient_noise import plot_gradient_noise
from optlab.viz.invariance import plot_angular_equilibrium, plot_grafting, plot_norms
from optlab.viz.kfac import plot_damping_ratio, plot_factor_traces, plot_jacobian_fit
from optlab.viz.mg_toy import plot_memorize_generalize
from optlab.viz.task import plot_points
from optlab.viz.weights import PROBE_SPLITS, plot_per_tensor, plot_weight_bands, quantities

# final metrics, each a column where some run of the experiment has it
FINALS = (
    "test_bits_per_char",
    "test_accuracy",
    "test_loss",
    "eval_accuracy",
    "eval_loss",
    "scalars_memorizer_mean",
    "scalars_generalizer",
)
MIME = {".png": "image/png", ".gif": "image/gif"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1rem; max-width: 1400px;
       color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
div.wide { overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; box-sizing: border-box; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #555; } section { border-top: 2px solid #444; }
"""


def write_report(store_path: str | Path, out: str | Path) -> Path:
    """Write the report of every experiment in the store at ``store_path`` to ``out``."""
    store = Store(store_path)
    try:
        compared = compare_one_path(store)
        names = experiments(store)
        finals = store.final_metrics()
        claims = _claims_section(store, set(names))
        with tempfile.TemporaryDirectory() as tmp:
            sections = [
                _section(store, load_experiment_record(store, name), i, finals, Path(tmp) / str(i))
                for i, name in enumerate(names)
            ]
    finally:
        store.close()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<li><a href="#exp-{i}">{_e(n)}</a></li>' for i, n in enumerate(names))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>optlab report</title><style>{STYLE}</style></head><body>"
        f"<h1>optlab report</h1><p>Store <code>{_e(str(store_path))}</code>, written {when}; "
        f"{len(names)} experiment(s); runs computed as <code>{_e(str(compared.path))}</code>"
        f"{'. ' + _e(compared.note()) if compared.note() else ''}.</p>"
        f"<ul>{nav}</ul>{claims}{''.join(sections)}"
        "</body></html>\n"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


# each claims catalog's section: its title, where its claims come from, its value column
CATALOGS = {
    "paper": ("The paper's claims", "Yu (2022) and its code's README", "paper"),
    "theory": (
        "The theory's claims",
        "the 2023 essay on AdamW; Grosse (2022), CSC 2541 lecture 5",
        "theory",
    ),
}


def _claims_section(store: Store, names: set[str]) -> str:
    """The claims about the experiments in the store, as ``optlab reproduce`` judges them, a
    section per claims catalog (the paper's, the theory's) and the method note once after
    them; nothing when none of them applies."""
    from optlab.analysis.claims import judge, method_note

    verdicts, tests = judge(store, experiments=names)
    if not verdicts:
        return ""
    catalogs = list(dict.fromkeys(v.catalog for v in verdicts))
    parts = [_claims_table([v for v in verdicts if v.catalog == c], c) for c in catalogs]
    parts[-1] += f"<p>{_e(method_note(tests))}</p>"
    return "".join(f"<section>{p}</section>" for p in parts)


def _claims_table(verdicts: list[Verdict], catalog: str) -> str:
    """A catalog's heading, where its claims come from, and its verdict table."""
    title, sources, value = CATALOGS.get(catalog, (f"Claims ({catalog})", "", "source"))
    rows = "".join(
        f"<tr><td>{_e(v.text)}<br><small><q>{_e(v.quote)}</q></small></td>"
        f"<td>{_e(v.source)}</td><td>{_e(v.paper)}</td>"
        f"<td>{_e(v.value)}</td><td><b>{_e(v.verdict)}</b></td>"
        f"<td>{'–' if v.seeds_needed is None else v.seeds_needed}</td></tr>"
        for v in verdicts
    )
    heads = ("claim", "source", value, "optlab (95% t interval, seeds)", "verdict", "seeds needed")
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    intro = f"<p>From {_e(sources)}.</p>" if sources else ""
    table = f'<div class="wide"><table><tr>{head}</tr>{rows}</table></div>'
    return f"<h2>{_e(title)}</h2>{intro}{table}"


def _section(store: Store, rec: ExperimentRecord, index: int, finals: dict, folder: Path) -> str:
    parts = [f'<section id="exp-{index}"><h2>{_e(rec.name)}</h2>']
    parts.append("<h3>Shared settings</h3>" + _shared_config(rec.runs))
    parts.append("<h3>Final metrics</h3>" + _finals_table(rec, finals))
    parts.append("<h3>Figures</h3>")
    parts += _figures(store, rec, folder)
    parts.append("</section>")
    return "".join(parts)


def _shared_config(runs: pd.DataFrame) -> str:
    """Settings every run shares, one row per spec section (task, model, optimizer, ...)."""
    sections: dict[str, list[str]] = {}
    for c in config_columns(runs):
        if c != SEED and distinct(runs[c]) == 1 and not _missing(runs[c].iloc[0]):
            section, _, key = c.partition(".")
            sections.setdefault(section, []).append(f"{key} = {_text(runs[c].iloc[0])}")
    rows = "".join(
        f"<tr><th>{_e(section)}</th><td>{_e('; '.join(items))}</td></tr>"
        for section, items in sections.items()
    )
    return f"<table>{rows}</table>"


def _finals_table(rec: ExperimentRecord, finals: dict) -> str:
    """One row per condition: its varying settings, seeds, statuses, and each final metric as
    its mean over seeds with the 95% interval [lo, hi] (the value alone for one seed), for
    the ``FINALS`` its runs recorded (no accuracy for a regression, bits per character for a
    language model)."""
    varying = [c for c in rec.varying if c != "model.name"]
    recorded = {k for i in rec.runs["id"] for k in finals.get(i, {})}
    metrics = [m for m in FINALS if m in recorded]
    head = ["condition", *varying, "seeds", "status", *metrics]
    rows = []
    tuned = len(rec.shown) < rec.runs["condition"].nunique()
    for condition, group in rec.runs.groupby("condition", sort=False):
        first = group.iloc[0]
        status = ", ".join(f"{s} {n}" for s, n in group["status"].value_counts().items())
        mark = " ★" if tuned and condition in rec.shown else ""
        cells = [_e(condition) + mark, *(_e(_text(first[c])) for c in varying)]
        cells += [_e(", ".join(str(int(s)) for s in group[SEED])), _e(status)]
        for metric in metrics:
            values = [finals.get(i, {}).get(metric) for i in group["id"]]
            cells.append(_number([v for v in values if v is not None and not math.isnan(v)]))
        first_number = len(cells) - len(metrics)
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="num">{c}</td>' if i >= first_number else f"<td>{c}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    note = "<p>Final values: mean over seeds [95% Student-t interval of the mean]."
    if tuned:
        note += (
            " ★: the tuned value each cell keeps (lowest mean final eval loss); figures show these."
        )
    note += "</p>"
    table = f"<table><tr>{header}</tr>{''.join(rows)}</table>"
    return f'{note}<div class="wide">{table}</div>'  # scrolls sideways, not the page


def _figures(store: Store, rec: ExperimentRecord, folder: Path) -> list[str]:
    out = []
    first_runs = rec.runs[rec.runs["condition"].isin(rec.shown)].drop_duplicates("condition")
    task_run = next(
        (i for i in first_runs["id"] if "task/eval_points" in store.array_names(i)), None
    )
    if task_run is not None:
        pts, lab, ctr = (
            store.array(task_run, f"task/{n}")[0] for n in ("eval_points", "eval_labels", "centers")
        )
        title = f"Voronoi task: k = {len(ctr)}, {len(pts):,} eval points"
        out.append(
            _figure(
                plot_points(pts, lab, ctr, folder / "task.png", title),
                "The task: eval points by class, centers as crosses.",
            )
        )
    for g, group in enumerate(_figure_groups(rec)):
        out += _group_figures(group, folder / f"group{g}")
    out += _invariance_figures(rec, folder)
    out += _kfac_figures(rec, folder)
    out += _batch_figures(rec, folder)
    png = plot_gradient_noise(rec, folder / "gradient_noise.png")
    if png:
        out.append(_figure(png, f"{rec.name}: {GRADIENT_NOISE_CAPTION}"))
    for i, (run_id, condition, seed) in enumerate(
        first_runs[["id", "condition", SEED]].itertuples(index=False)
    ):
        label = f"{condition} (seed {seed})"
        gif = animate_decision_map(store, run_id, folder / f"map{i}.gif", label)
        if gif:
            out.append(_figure(gif, f"Decision map over training: {label}."))
        gif = animate_centers(store, run_id, folder / f"centers{i}.gif", label)
        if gif:
            out.append(_figure(gif, f"Learned centers over training: {label}."))
    return out


def _figure_groups(rec: ExperimentRecord) -> list[ExperimentRecord]:
    """``rec.groups()``, or ``rec`` itself where no group would hold two conditions (no case
    is a baseline and each changes its own settings, as scale_invariance's): a figure of
    one condition compares nothing."""
    groups = rec.groups()
    return [rec] if all(len(g.conditions) <= 1 for g in groups) else groups


def _group_figures(rec: ExperimentRecord, folder: Path) -> list[str]:
    """Eval curves, weight bands, the norms of scale-invariant weights and the per-tensor probe
    figures of one group of conditions."""
    out = []
    curves = plot_eval_curves(rec, folder / "curves.png")
    if curves:
        out.append(
            _figure(
                curves,
                f"{rec.name}: eval {' and '.join(LABELS.get(n, n) for n in eval_panels(rec))} "
                "per condition, mean over seeds, shaded from the lowest to the highest seed.",
            )
        )
    solutions = plot_memorize_generalize(rec, folder / "mg.png")
    if solutions:
        out.append(
            _figure(
                solutions,
                f"{rec.name}: the memorizers' mean and the generalizer weight per condition "
                "(log steps), mean over seeds, shaded from the lowest to the highest seed; "
                "dashed: the minimum-L2-norm solution 1/(n+1), n/(n+1); dotted: the L∞ one, ½.",
            )
        )
    bands = plot_weight_bands(rec, folder / "weights.png")
    if bands:
        out.append(
            _figure(
                bands,
                f"{rec.name}: weight bands, each parameter tensor's mean (line) and "
                "min–max (shaded), per condition.",
            )
        )
    norms = plot_norms(rec, folder / "norms.png")
    if norms:
        out.append(
            _figure(
                norms,
                f"{rec.name}: ‖w‖ of each scale-invariant weight (one that feeds a normalizer) "
                "per condition, mean over seeds, log scale.",
            )
        )
    for split in PROBE_SPLITS:
        for quantity in quantities(rec, split):
            png = plot_per_tensor(
                rec, split, quantity, folder / f"{split}-{quantity}.png", quantity
            )
            what = quantity if quantity == split else f"{split} {quantity}"
            if png:
                out.append(_figure(png, f"{rec.name}: {what} per tensor, mean over seeds."))
    return out


GRADIENT_NOISE_CAPTION = (
    "the grad_stats probe over training, whole model, per condition, mean over seeds shaded "
    "from the lowest to the highest seed (log scale where a panel spans more than a decade): "
    "the 2025 thesis notepad's KL between the minibatch gradient's Gaussian N(ḡ, Σ/B) and "
    "Adam's N(m̂, v̂ − m̂²), both directions, and the share of coordinates without a variance "
    "that both leave out; v̂ − m̂² against Σ/B (Balles and Hennig 2018; dotted: 1, where it "
    "tracks); the noise scale tr Σ/‖ḡ‖² and its two-batch estimate (McCandlish et al. 2018); "
    "the signal-to-noise ratio at the run's batch; the step's cosine with −ḡ; ‖√v̂‖."
)


def _invariance_figures(rec: ExperimentRecord, folder: Path) -> list[str]:
    """The figures that compare conditions chosen by their config across the whole record,
    where it has them (Grosse (2022), CSC 2541 lecture 5): the angular update of the
    scale-invariant weights against its equilibrium, and norm grafting beside its partners."""
    figures = (
        (
            plot_angular_equilibrium(rec, folder / "angular.png"),
            "the angular update per step ∠(w_k, w_{k+1}) of each scale-invariant weight under "
            "the conditions whose weight decay acts on it, mean over seeds (log scale); dashed, "
            "in the same colour: its predicted equilibrium √(2ηλ/(1+α)) for SGD with momentum "
            "α, √(2ηλ(1−β₁)/(1+β₁)) for AdamW (Wan et al. 2021; Kosson et al. 2024); thick "
            "segment: the mean over the condition's last fifth of training, which the claim "
            "compares with the prediction.",
        ),
        (
            plot_grafting(rec, folder / "grafting.png"),
            "norm grafting: eval accuracy of the run that takes, after every step, the norms of "
            "its scale-invariant weights from a partner (whose optimizer fields the panel's "
            "title names), beside that partner and the same run without grafting; mean over "
            "seeds, shaded from the lowest to the highest seed.",
        ),
    )
    return [_figure(png, f"{rec.name}: {caption}") for png, caption in figures if png]


def _kfac_figures(rec: ExperimentRecord, folder: Path) -> list[str]:
    """K-FAC's damping and factors, and the Gauss-Newton norm against the Jacobian norm, across
    the whole record, where it has them (Grosse (2022), CSC 2541 lecture 5, mechanisms 3 and 2;
    Zhang, Wang, Xu and Grosse (2019))."""
    spread = "mean over seeds, shaded from the lowest to the highest seed"
    figures = (
        (
            plot_damping_ratio(rec, folder / "damping.png"),
            "mechanism 3: each K-FAC layer's damping ratio γ/(λ_max(A)·λ_max(G)), the damping "
            f"against the largest curvature of its block, per condition, {spread}, log scale; "
            "dotted: 1, where damping equals curvature. Above 1 the damping dominates and K-FAC "
            "steps like SGD at η/γ. Expected: under the Fisher without decay the ratio falls "
            "early, then rises above 1 as G shrinks with the fit; decay holds it lower; under "
            "Gauss-Newton it stays well below 1.",
        ),
        (
            plot_factor_traces(rec, folder / "factors.png"),
            f"the traces of each K-FAC layer's running factors A (top) and G (bottom), {spread}; "
            "log scale where they span more than a decade. The first layer's A is the data's "
            "(the same under every condition); the Fisher's G falls as the model fits the data.",
        ),
        (
            plot_jacobian_fit(rec, folder / "jacobian.png"),
            "mechanism 2: θᵀĜθ / ((L + 1)·E tr(J Σ Jᵀ)), the Gauss-Newton norm against the "
            f"squared input-output Jacobian in whitened input coordinates, per condition, {spread}; "
            "dashed: against E‖J‖²_F on the raw pixels; log scale; dotted: 1, exact for a linear "
            "network without biases.",
        ),
    )
    return [_figure(png, f"{rec.name}: {caption}") for png, caption in figures if png]


def _batch_figures(rec: ExperimentRecord, folder: Path) -> list[str]:
    """Runs whose batches differ (issue 16; the 2025 thesis notepad): at equal samples seen
    and by rule and batch, where the record has them."""
    figures = (
        (
            plot_samples(rec, folder / "samples.png"),
            "eval accuracy against the samples seen (Σ of the batch over steps, log scale; "
            "top) and the batch over training (bottom), per condition and model, mean over "
            "seeds: curves compared at the same abscissa are compared at equal samples; a "
            "controller's batch doubles when its variance test fails.",
        ),
        (
            plot_rules_by_batch(rec, folder / "rules_by_batch.png"),
            "test accuracy (top) and the gradient's signal-to-noise ratio at the run's batch, "
            "snr_B = B/B_simple from the grad_stats probe at the last evaluation (bottom, log; "
            "dotted: 1), against the batch, per rule, each at its tuned learning rate, mean "
            "over seeds; every run saw the same number of samples.",
        ),
    )
    return [_figure(png, f"{rec.name}: {caption}") for png, caption in figures if png]


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    uri = f"data:{MIME[path.suffix]};base64,{data}"
    return f'<figure><img src="{uri}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _number(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    s = summarize(values)
    return f"{s.mean:.4f} [{s.lo:.4f}, {s.hi:.4f}]"


def _missing(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _text(value) -> str:
    """A setting as written: "–" where a model leaves it unset (NaN in a pandas column),
    whole numbers without the ".0" that a column with NaN gives them."""
    value = value.item() if hasattr(value, "item") else value
    if _missing(value):
        return "–"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
