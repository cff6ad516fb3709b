"""The ``optlab`` command: list, run, show, task, report, export, bench.

Every command validates its whole input before it touches the store: bad input gets
one line (the field, the value, what is allowed), exit code 2, and nothing written.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from optlab import catalog
from optlab.config import (
    ExperimentSpec,
    PlannedRun,
    SpecError,
    expand,
    load_suite,
    overridden_note,
    parse_override,
)
from optlab.errors import StoreError
from optlab.store import DEFAULT_STORE, Store

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)  # progress, when stdout carries JSON

StoreOpt = Annotated[Path, typer.Option("--store", help="SQLite store of results")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a field: key=value")]
ProfileOpt = Annotated[
    str, typer.Option("--profile", help="paper (the spec as written), quick, or another it defines")
]
SeedsOpt = Annotated[int | None, typer.Option("--seeds", help="seeds per cell")]
CasesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cases",
        help="only these cases (repeat, or comma-separated): a slice of a long sweep, which "
        "a later run without it resumes",
    ),
]
FreshOpt = Annotated[
    bool,
    typer.Option(
        "--fresh", help="also retrain runs the store holds computed along another numeric path"
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="training processes; default: one per core")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor", help="local (a pool of processes) or ray (a Ray task per stack of runs)"
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="with --executor ray: the Ray cluster to join (default: a local Ray instance)",
    ),
]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="memory for training, e.g. 2G or 512M: stacks are split to fit (shared by workers)",
    ),
]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def open_store(path: Path) -> Store:
    """The store at ``path``, or exit 2 with one line if the file is something else."""
    try:
        return Store(path)
    except StoreError as err:
        fail(str(err))


def plan(
    experiment: str | dict,
    sets: list[str] | None,
    profile: str,
    seeds: int | None = None,
    max_memory: int | None = None,
    cases: list[str] | None = None,
) -> tuple[list[ExperimentSpec], list[PlannedRun]]:
    """Load, override and expand an experiment or a suite (only ``cases``, where given), or
    exit 2 with the reason (sizes that ``max_memory``, else the machine's available memory,
    cannot hold among them); warn on stderr where an override replaces what cases set."""
    if seeds is not None and seeds < 1:
        fail(f"--seeds: {seeds} is not allowed: must be >= 1")
    try:
        overrides = dict(parse_override(s) for s in sets or [])
        specs, planned = load_suite(experiment), []
        for spec in specs:
            first = spec.seeds_for(profile)[0]
            seed_list = None if seeds is None else list(range(first, first + seeds))
            planned += expand(spec, overrides, profile=profile, seeds=seed_list)
    except SpecError as err:
        fail(str(err))
    if cases:
        planned = only_cases(planned, cases)
    from optlab.engine.memory import available_memory, check_fits, size_text
    from optlab.engine.train import check_buildable

    budget = max_memory if max_memory is not None else available_memory()
    try:  # sizes first: building a task draws its data
        if budget is not None:
            held = f"this machine has {size_text(budget)} available"
            if max_memory is not None:
                held = f"--max-memory is {size_text(budget)}"
            check_fits([p.spec for p in planned], budget, held)
        check_buildable([p.spec for p in planned])
    except ValueError as err:  # a size, a factory, a model for another task, a text hash
        fail(str(err))
    for spec in specs:
        runs = [p for p in planned if p.experiment == spec.name]
        if note := overridden_note(spec, overrides, profile, runs):
            typer.echo(f"warning: {note}", err=True)
    return specs, planned


def only_cases(planned: list[PlannedRun], cases: list[str]) -> list[PlannedRun]:
    """The runs of the named ``cases`` (``--cases a,b`` or repeated), or exit 2 naming one
    that no experiment has."""
    names = [c.strip() for text in cases for c in text.split(",") if c.strip()]
    known = list(dict.fromkeys(p.case for p in planned))
    for name in names:
        if name not in known:
            fail(f"--cases: {name!r} is not a case here; valid: {', '.join(known)}")
    return [p for p in planned if p.case in names]


@app.command("list")
def list_() -> None:
    """The catalog's experiments, and the tasks, models, optimizers, decay rules and probes a
    spec can name."""
    from optlab.config import TASK_NAMES
    from optlab.models import MODELS
    from optlab.models.module import MODULES
    from optlab.optim import OPTIMIZERS
    from optlab.optim.decay import DECAY_NAMES
    from optlab.probes import PROBES

    table = Table("experiment", "description")
    for name, text in catalog.describe().items():
        table.add_row(name, text)
    console.print(table)
    console.print(f"tasks (task.name): {', '.join(TASK_NAMES)}")
    console.print(f"models, hand-stacked (options in model.*): {', '.join(MODELS)}")
    console.print(
        f"models, nn.Module factories (arguments in model.kwargs): {', '.join(MODULES)}, "
        "or your own as package.module:function"
    )
    console.print(f"optimizers: {', '.join(OPTIMIZERS)}, or a torch.optim.Optimizer import path")
    console.print(f"decay rules (decoupled): {', '.join(DECAY_NAMES)}")
    console.print(f"probes (probes.record): {', '.join(PROBES)}")


@app.command()
def run(
    experiment: Annotated[str, typer.Argument(help="catalog name or TOML file")],
    set_: SetOpt = None,
    seeds: SeedsOpt = None,
    profile: ProfileOpt = "paper",
    cases: CasesOpt = None,
    workers: WorkersOpt = None,
    max_memory: MaxMemoryOpt = None,
    fresh: FreshOpt = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Train an experiment's runs that the store has not finished, then print their results."""
    check_workers(workers)
    check_executor(executor, address)
    budget = memory_budget(max_memory)
    specs, planned = plan(experiment, set_, profile, seeds, budget, cases)
    start_executor(executor, address, workers)
    db = open_store(store)
    train(specs, planned, db, workers, max_memory=budget, fresh=fresh, executor=executor)
    run_ids = {p.run_id for p in planned}
    if len(run_ids) > len({(p.experiment, p.case, _cell(p.spec)) for p in planned}):
        print_summary(db, run_ids)  # several seeds per cell
    else:
        print_results(db, run_ids, None)
    db.close()


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        fail(f"--workers: {workers} is not allowed: must be >= 1")


def check_executor(executor: str, address: str | None) -> None:
    """--executor and --address, or exit 2 with what is allowed (and how to install Ray)."""
    from optlab.engine import ray_executor
    from optlab.engine.sweep import EXECUTORS

    if executor not in EXECUTORS:
        fail(f"--executor: {executor!r} is not allowed: one of {', '.join(EXECUTORS)}")
    if executor == "ray" and not ray_executor.available():
        fail(f"--executor ray: Ray is not installed; {ray_executor.INSTALL}")
    if address is not None and executor != "ray":
        fail(
            f"--address: {address!r} is not allowed with --executor {executor}: it names a Ray cluster"
        )


def start_executor(executor: str, address: str | None, workers: int | None) -> None:
    """Start or join Ray for ``--executor ray`` before the store is touched, or exit 2 with
    the reason the cluster at ``address`` could not be joined."""
    if executor != "ray":
        return
    from optlab.engine import ray_executor

    try:
        ray_executor.start(address, workers)
    except ConnectionError as err:
        fail(f"--address: {address!r} is not a Ray cluster this machine can join: {err}")


def memory_budget(text: str | None) -> int | None:
    """--max-memory in bytes, or exit 2 with what is allowed."""
    if text is None:
        return None
    from optlab.engine.memory import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError:
        fail(f"--max-memory: {text!r} is not allowed: a positive size such as 512M, 2G or 1.5GB")


def train(
    specs: list[ExperimentSpec],
    planned: list[PlannedRun],
    db: Store,
    workers: int | None,
    out: Console = console,
    max_memory: int | None = None,
    fresh: bool = False,
    executor: str = "local",
) -> None:
    """Train what the store lacks of ``planned`` (``fresh``: and what it holds computed
    along another numeric path) with ``executor``, with a progress bar on ``out``."""
    from optlab.engine import pending, run_planned

    todo = pending(planned, db, fresh)
    total = sum(s.train.steps for s in todo)
    out.print(f"{len(planned)} runs, {len(todo)} to train, {total:,} run-steps; store: {db.path}")
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("train", total=total)
        run_planned(
            planned,
            db,
            lambda n: bar.advance(task, n),
            workers=workers,
            experiments=specs,
            max_memory=max_memory,
            fresh=fresh,
            executor=executor,
        )


def _cell(spec) -> str:
    """A run's config without its training seed: the runs of one cell share it."""
    return spec.with_train(seed=0).run_id


def print_summary(db: Store, run_ids: set[str]) -> None:
    """One row per cell (a case, or a case's grid point) with the model it trained: mean ±
    sd over its seeds of the final test metrics."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for r in records(db, None, run_ids):
        rest = {k: v for k, v in r["settings"].items() if k != "train.seed"}
        rest["experiment"] = r["experiment"]
        cell = (r["case"], r["model"], json.dumps(rest, sort_keys=True, default=str))
        cells.setdefault(cell, []).append(r)
    grids = {}
    for case, model, rest in cells:
        siblings = [json.loads(k) for c, _, k in cells if c == case]  # the case's grid points
        own = json.loads(rest)
        grids[case, model, rest] = {
            k: v for k, v in own.items() if len({str(s[k]) for s in siblings}) > 1
        }
    grid_col = ["grid"] if any(grids.values()) else []
    recs_all = [r for recs in cells.values() for r in recs]
    finals = final_columns(recs_all)
    table = Table(
        "case",
        "model",
        *grid_col,
        "seeds",
        "diverged",
        *(f"{label} (mean ± sd)" for label in finals.values()),
    )
    for cell, recs in cells.items():
        grid = ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in grids[cell].items())
        table.add_row(
            cell[0],
            cell[1],
            *([grid] if grid_col else []),
            str(len(recs)),
            str(sum(r["diverged_step"] is not None for r in recs)),
            *(_mean_sd([r.get(key) for r in recs]) for key in finals),
        )
    console.print(table)
    for name in sorted({r["experiment"] for recs in cells.values() for r in recs}):
        console.print(f"per run: optlab show --experiment {name}")


def final_columns(recs: list[dict]) -> dict[str, str]:
    """The final metrics a table of ``recs`` shows, key -> label: test accuracy where the
    task has one, bits per character where it reports them, test loss, and the model's own
    scalars where every run has the same few (the essay toy's memorizers and generalizer)."""
    keys = {k for r in recs for k in r}
    columns = {}
    if "test_accuracy" in keys:
        columns["test_accuracy"] = "test acc"
    if "test_bits_per_char" in keys:
        columns["test_bits_per_char"] = "test bits/char"
    columns["test_loss"] = "test loss"
    shared = set.intersection(*({k for k in r if k.startswith("scalars_")} for r in recs))
    if 0 < len(shared) <= MAX_SCALAR_COLUMNS:
        columns.update({k: k.removeprefix("scalars_") for k in sorted(shared)})
    return columns


MAX_SCALAR_COLUMNS = 4


def _mean_sd(values: list) -> str:
    finite = [v for v in values if not _missing(v) and math.isfinite(v)]
    if not finite:
        return "-"
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return f"{np.mean(finite):.4f} ± {sd:.4f}" + (
        f" (n={len(finite)})" if len(finite) < len(values) else ""
    )


def records(
    db: Store, experiment: str | None = None, run_ids: set[str] | None = None
) -> list[dict]:
    """One record per run: id, experiment, case, model, the settings that vary, status, finals."""
    runs = db.runs(experiment)
    if runs.empty:
        return []
    if run_ids is not None:
        runs = runs[runs["id"].isin(run_ids)]
    finals = db.final_metrics()
    out = []
    for exp, rows in runs.groupby("experiment", sort=False):
        config_cols = [c for c in rows.columns if "." in c and c != "model.name"]
        varying = [c for c in config_cols if rows[c].astype(str).nunique() > 1]
        for _, row in rows.iterrows():
            rec = {
                "id": row["id"],
                "experiment": exp,
                "case": row["case"],
                "model": row["model.name"],
                "settings": {c: _plain(row[c]) for c in varying},
                "status": row["status"],
                "diverged_step": None
                if _missing(row["diverged_step"])
                else int(row["diverged_step"]),
                "train_seconds": None if _missing(row["train_seconds"]) else row["train_seconds"],
                "numeric_path": None if row["status"] == "pending" else row["numeric_path"],
                "versions": json.loads(row["versions"])
                if isinstance(row["versions"], str)
                else None,
            }
            rec.update(finals.get(row["id"], {}))
            out.append(rec)
    return out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def print_results(db: Store, run_ids: set[str] | None, experiment: str | None) -> None:
    recs = records(db, experiment, run_ids)
    table = Table(
        "run",
        "experiment",
        "case",
        "model",
        "settings",
        "status",
        "test acc",
        "test loss",
        "eval loss",
        "seconds",
    )
    for r in recs:
        settings = ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in r["settings"].items())
        status = r["status"] + (f"@{r['diverged_step']}" if r["diverged_step"] is not None else "")
        table.add_row(
            r["id"],
            r["experiment"],
            r["case"],
            r["model"],
            settings,
            status,
            _fmt(r.get("test_accuracy")),
            _fmt(r.get("test_loss")),
            _fmt(r.get("eval_loss")),
            _fmt(r["train_seconds"], ".1f"),
        )
    console.print(table)
    paths: dict[str, int] = {}
    for r in recs:
        if r["numeric_path"] is not None:
            paths[r["numeric_path"]] = paths.get(r["numeric_path"], 0) + 1
    for path, n in paths.items():
        console.print(f"computed as {path}: {n} run{'s' * (n != 1)}")


def _fmt(value, spec: str = ".4f") -> str:
    """``value`` in the format ``spec``, or "-" where it is missing."""
    return "-" if _missing(value) else f"{value:{spec}}"


@app.command()
def show(
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="only this experiment")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON record per run")] = False,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """The runs in the store with their status and final metrics."""
    if not store.exists():
        fail(f"--store: {str(store)!r} does not exist (run an experiment first)")
    db = open_store(store)
    if as_json:
        typer.echo(json.dumps(records(db, experiment), indent=1))
    else:
        print_results(db, None, experiment)
    db.close()


@app.command()
def task(
    name: Annotated[
        str, typer.Argument(help="a task (voronoi, mg_toy, digits, charlm), or an experiment")
    ] = "ladder",
    set_: SetOpt = None,
    profile: ProfileOpt = "paper",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable summary")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="draw the task to this PNG")] = None,
) -> None:
    """Describe a task: sizes, classes or vocabulary, what identifies its data."""
    from optlab.config import TASK_NAMES
    from optlab.engine.train import task_for

    source = {"name": name, "base": {"task": {"name": name}}} if name in TASK_NAMES else name
    spec = plan(source, set_, profile)[1][0].spec
    data = task_for(spec)  # built once already by plan's checks
    summary = data.summary()
    if as_json:
        typer.echo(json.dumps(summary))
    elif spec.task.name == "voronoi":
        t = spec.task
        console.print(
            f"Voronoi task: rule={t.rule}, seed={t.seed}, D={t.dim}, C={t.classes}, "
            f"k={summary['k']}"
        )
        table = Table("split", "points", "class counts", "majority accuracy")
        for split in ("train", "eval", "test"):
            s = summary[split]
            table.add_row(
                split, f"{s['n']:,}", str(s["class_counts"]), f"{s['majority_accuracy']:.4f}"
            )
        console.print(table)
    else:
        console.print(f"{spec.task.name} task")
        for key, value in summary.items():
            console.print(f"  {key}: {json.dumps(value)}")
    if plot is not None:
        if spec.task.name != "voronoi":
            fail(f"--plot: draws the voronoi task; {spec.task.name} has no picture")
        from optlab.viz.task import plot_environment

        print(f"plot: {plot_environment(data, plot)}", file=sys.stderr if as_json else sys.stdout)


@app.command()
def report(
    store: StoreOpt = DEFAULT_STORE,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path(
        "results/report.html"
    ),
) -> None:
    """One self-contained HTML report of the store: per experiment its settings, final metrics
    (mean ± 95% interval over seeds) and figures; prints the report's path."""
    if not store.exists():
        fail(f"--store: {str(store)!r} does not exist (run an experiment first)")
    open_store(store).close()
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"--out: {str(out)!r} is not allowed: the report is an .html file")
    from optlab.viz.report import write_report

    typer.echo(f"report: {write_report(store, out).resolve()}")


export_app = typer.Typer(no_args_is_help=True, help="Write the store in other tools' formats.")
app.add_typer(export_app, name="export")


@export_app.command("tensorboard")
def export_tensorboard(
    store: StoreOpt = DEFAULT_STORE,
    out: Annotated[Path, typer.Option("--out", help="TensorBoard log directory")] = Path(
        "results/tensorboard"
    ),
) -> None:
    """Every run's metrics as scalars and its snapshots as histograms, one event directory
    per run (view with `tensorboard --logdir OUT`)."""
    if not store.exists():
        fail(f"--store: {str(store)!r} does not exist (run an experiment first)")
    open_store(store).close()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        fail(
            "export tensorboard: the tensorboard package is missing; pip install 'optlab[tensorboard]'"
        )
    from optlab.viz.tensorboard import export_tensorboard as export

    runs = export(store, out)
    typer.echo(f"tensorboard: {len(runs)} runs in {out.resolve()}")


@app.command()
def reproduce(
    suite: Annotated[str, typer.Argument(help="catalog suite or experiment")] = "paper",
    set_: SetOpt = None,
    seeds: SeedsOpt = None,
    profile: ProfileOpt = "paper",
    cases: CasesOpt = None,
    workers: WorkersOpt = None,
    max_memory: MaxMemoryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="cells and verdicts as JSON")] = False,
    fresh: FreshOpt = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Train what is missing, then print each cell over seeds and a verdict per claim, from
    the runs of one numeric path (the one most were computed along; others are named)."""
    from optlab.analysis import convergence
    from optlab.analysis.batches import budget_table, varies_batch
    from optlab.analysis.cells import cells
    from optlab.analysis.claims import (
        cases_named,
        experiments_of,
        judge,
        load_claims,
        method_note,
    )
    from optlab.analysis.cost import training_time
    from optlab.analysis.gradient_noise import trends
    from optlab.analysis.paths import compare_one_path

    check_workers(workers)
    check_executor(executor, address)
    budget = memory_budget(max_memory)
    specs, planned = plan(suite, set_, profile, seeds, budget, cases)
    start_executor(executor, address, workers)
    db = open_store(store)
    out = err_console if as_json else console
    train(specs, planned, db, workers, out, budget, fresh, executor)
    convergence.record(db, sorted({p.run_id for p in planned}))
    db.analyze_only(p.run_id for p in planned)  # not the store's other profiles and configs
    compared = compare_one_path(db, [spec.name for spec in specs])
    tables = {spec.name: cells(db, spec.name) for spec in specs}
    runs = {spec.name: db.runs(spec.name) for spec in specs}
    times = {name: training_time(r) for name, r in runs.items()}
    budgets = {name: budget_table(db, name) for name, r in runs.items() if varies_batch(r)}
    kl_trends = {spec.name: trends(db, spec.name) for spec in specs}
    kl_trends = {name: t for name, t in kl_trends.items() if not t.empty}
    names = {spec.name for spec in specs}
    claims, waiting = load_claims(), []
    if cases:  # a slice judges the claims whose cases it holds; the others wait for theirs
        known = {(spec.name, case) for spec in specs for case in spec.cases}
        sliced = {(p.experiment, p.case) for p in planned}
        held = [c for c in claims if cases_named(c, known) <= sliced]
        waiting = [c["id"] for c in claims if experiments_of(c) <= names and c not in held]
        claims = held
    verdicts, tests = judge(db, claims, experiments=names)
    db.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "cells": {k: t.to_dict("records") for k, t in tables.items()},
                    "budgets": {k: t.to_dict("records") for k, t in budgets.items()},
                    "training_time": {k: vars(t) for k, t in times.items()},
                    "verdicts": [
                        {
                            "id": v.id,
                            "text": v.text,
                            "quote": v.quote,
                            "source": v.source,
                            "paper": v.paper,
                            "optlab": v.value,
                            "verdict": v.verdict,
                            "seeds_needed": v.seeds_needed,
                        }
                        for v in verdicts
                    ],
                    "tests": tests,
                    "not_judged": waiting,
                    "kl_adam_trends": {k: t.to_dict("records") for k, t in kl_trends.items()},
                    "numeric_path": compared.path,
                    "not_compared": compared.others,
                },
                indent=1,
                default=str,
            )
        )
        return
    console.print(f"numeric path: {compared.path}")
    if compared.note():
        console.print(f"[yellow]{compared.note()}[/yellow]")
    for name, table in tables.items():
        print_cells(name, table)
        if times[name].runs:
            console.print(f"{name}: {times[name]}")
        if name in budgets:
            print_budgets(name, budgets[name])
    for name, table in kl_trends.items():
        print_trends(name, table)
    if waiting:
        console.print(f"not judged: {len(waiting)} claims name cases outside --cases")
    if not verdicts:
        return
    out = Table(
        "claim", "source", "paper", "optlab (mean [95% t CI], n seeds)", "verdict", "seeds needed"
    )
    for v in verdicts:
        needed = "–" if v.seeds_needed is None else str(v.seeds_needed)
        out.add_row(v.text, v.source, v.paper, v.value, v.verdict, needed)
    console.print(out)
    console.print(f"profile {profile}. {method_note(tests)}")


def print_trends(experiment: str, table) -> None:
    """The gradient_noise verdicts: does kl_adam fall, stay or grow (analysis.gradient_noise)."""
    from optlab.analysis.gradient_noise import STAYS_WITHIN

    keys = [c for c in table.columns if c == "case" or c.startswith(("optimizer.", "train."))]
    out = Table(
        *keys,
        "seeds",
        "ln change of kl_adam, 2nd half [95% CI]",
        "verdict",
        "kl_adam, 2nd half",
        "v_hat_tracks 1st → 2nd half",
    )
    for r in table.to_dict("records"):
        out.add_row(
            *(str(r[k]) for k in keys),
            str(r["seeds"]),
            f"{r['change']:+.2f} [{r['change_lo']:+.2f}, {r['change_hi']:+.2f}]",
            r["verdict"],
            f"{r['second_half_median']:.3g}",
            f"{r['v_hat_tracks_first_half']:.3g} → {r['v_hat_tracks_second_half']:.3g}",
        )
    console.print(f"[bold]{experiment}[/bold]: kl_adam over the second half of training")
    console.print(out)
    console.print(
        "ln change: the least-squares slope of ln kl_adam on the step over the second half, times "
        "its length, mean over seeds [Student-t]; falls / grows: the interval below / above 0; "
        f"stays: within ±{STAYS_WITHIN:.3f} (1.5×); else inconclusive. kl_adam and v_hat_tracks: "
        "each run's median over its records in each half, mean over seeds (v_hat_tracks 1: "
        "v̂ − m̂² tracks Σ/B)."
    )


def print_cells(experiment: str, table) -> None:
    if table.empty:
        return
    tuned = [c for c in table.columns if c.startswith(("optimizer.", "model.", "train."))]
    compared = "delta" in table.columns
    extra = ("Δ vs baseline [95% CI]", "p (Holm)") if compared else ()
    out = Table("case", *tuned, "seeds", "diverged", "test accuracy [95% CI]", "test loss", *extra)
    for r in table.to_dict("records"):
        delta = () if not compared else ("-", "-")
        if compared and not _missing(r["delta"]):
            delta = (
                f"{r['delta']:+.4f} [{r['delta_lo']:+.4f}, {r['delta_hi']:+.4f}]",
                f"{r['p']:.2g} ({r['p_holm']:.2g})",
            )
        out.add_row(
            r["case"],
            *(str(r[c]) for c in tuned),
            str(r["seeds"]),
            str(r["diverged"]),
            f"{r['test_accuracy']:.4f} [{r['test_accuracy_lo']:.4f}, {r['test_accuracy_hi']:.4f}]",
            f"{r['test_loss']:.4f}",
            *delta,
        )
    console.print(f"[bold]{experiment}[/bold]" + (f" (tuned: {', '.join(tuned)})" if tuned else ""))
    console.print(out)
    if compared:
        console.print(
            f"Δ: test accuracy minus the baseline's; p: paired t over shared seeds (else Welch), Holm over the "
            f"{int(table['comparisons'].iloc[0])} comparisons of this experiment."
        )


def print_budgets(experiment: str, table) -> None:
    """An experiment whose batches differ, at equal steps and at equal samples seen
    (``analysis.batches``); by rule and batch where its grid is the optimizer."""
    from optlab.analysis.batches import by_rule

    if table.empty:
        return
    grid = [c for c in table.columns if c.startswith(("model.", "optimizer.", "train."))]
    snr = table["snr"].notna().any()
    out = Table(
        "case",
        *grid,
        "seeds",
        "batch (end)",
        "samples (end)",
        "test acc after the last step [95% CI]",
        "S*",
        "step at S*",
        "eval acc at S* [95% CI]",
        *(["snr at B"] if snr else []),
    )
    for r in table.to_dict("records"):
        out.add_row(
            r["case"],
            *(str(r[c]) for c in grid),
            str(r["seeds"]),
            f"{r['batch']:.0f}",
            f"{r['samples']:,.0f}",
            _with_ci(r, "test_accuracy"),
            f"{r['budget']:,.0f}",
            f"{r['steps_at_budget']:.0f}",
            _with_ci(r, "eval_accuracy_at_budget"),
            *([_fmt(r["snr"], ".3g")] if snr else []),
        )
    console.print(f"[bold]{experiment}[/bold]: equal steps and equal samples seen")
    console.print(out)
    console.print(
        "S*: the fewest samples any run of the same grid point saw; eval accuracy there is "
        "linear in samples between evaluations (test is read after the last step only)"
        + ("; snr at B = B/B_simple, at the last evaluation." if snr else ".")
    )
    if "optimizer.name" not in grid:
        return
    wide = by_rule(table)
    shown = [c for c in wide.columns if not c.endswith((" lo", " hi"))]
    out = Table(*(f"{c} [95% CI]" if "−" in c else c for c in shown))
    for r in wide.to_dict("records"):
        cells = [f"{r['batch']:.0f}"]
        for c in shown[1:]:
            if "−" in c:
                cells.append(f"{r[c]:+.4f} [{r[f'{c} lo']:+.4f}, {r[f'{c} hi']:+.4f}]")
            else:
                cells.append(_fmt(r[c], ".3g" if "snr" in c else ".4f"))
        out.add_row(*cells)
    console.print(f"[bold]{experiment}[/bold]: test accuracy and snr by rule and batch")
    console.print(out)


def _with_ci(r: dict, key: str) -> str:
    return f"{r[key]:.4f} [{r[f'{key}_lo']:.4f}, {r[f'{key}_hi']:.4f}]"


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="shorter runs, a minute or two")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="also time the ladder sweep with 5 seeds on every core (paper profile, "
            "or quick with --quick): wall, CPU, busy share of the cores",
        ),
    ] = False,
    executors: Annotated[
        bool,
        typer.Option(
            "--executors",
            help="also train the ladder's quick profile with 2 seeds (1 with --quick) by the "
            "local pool and by Ray, side by side: Ray's throughput against the pool's",
        ),
    ] = False,
) -> None:
    """Throughput against the matmul peak and against plain PyTorch loops, in one process."""
    from optlab.bench.measure import LADDER_CASES, run_bench
    from optlab.engine import ray_executor

    if executors and not ray_executor.available():
        fail(f"--executors: Ray is not installed; {ray_executor.INSTALL}")
    result = run_bench(quick, with_sweep=sweep, with_executors=executors)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    console.print(
        f"device {result['device']}, {result['threads']} threads; "
        f"matmul peak {result['matmul_peak_gflops']:.1f} GFLOP/s"
    )
    table = Table(
        "case",
        "optlab",
        "plain loop",
        "vs plain",
        "R=32 speedup",
        "R=32 vs plain",
        "% of peak",
        "peak RSS MB",
        "store B/run",
    )
    rows = [("final", result["final"], result["final"])]  # (label, figures, its case)
    for name in LADDER_CASES:
        rows.append((name, result[name], result[name]))
        if "compiled" in result[name]:  # --quick leaves the compiled rows out
            rows.append((f"{name}, compiled", result[name]["compiled"], result[name]))
    for label, r, case in rows:
        one_run = r.get("steps_per_s", r.get("r1_run_steps_per_s"))
        unit = "steps/s" if "steps_per_s" in r else "run·steps/s"
        table.add_row(
            label,
            f"{one_run:,.0f} {unit}",
            _fmt(case["plain_loop_steps_per_s"], ",.0f"),
            f"{r['vs_plain_loop']:.2f}×",
            _fmt(r.get("speedup_r32"), ".2f"),
            _fmt(r.get("stacked_vs_plain_loop"), ".2f"),
            _fmt(r.get("pct_of_peak"), ".1f"),
            _fmt(r.get("peak_rss_mb"), ".0f"),
            _fmt(r.get("store_bytes_per_run"), ",.0f"),
        )
    console.print(table)
    for name in LADDER_CASES:
        rates = {
            int(k[1:].split("_")[0]): v
            for k, v in result[name].items()
            if k.endswith("_run_steps_per_s")
        }
        r = result[name]
        compiled = f"; compiled in {r['compiled']['compile_s']:.0f} s" if "compiled" in r else ""
        console.print(
            f"{name}: " + ", ".join(f"R={n} {v:,.0f}" for n, v in rates.items()) + " run·steps/s"
            f"{compiled}; one eval of {result['eval_points']:,} points costs "
            f"{r['eval_ms_per_run_r1']:.1f} ms per run at R=1, {r['eval_ms_per_run_r32']:.1f} at R=32"
            f" ({r['eval_vs_training']:.2f}× the {result['eval_every']} training steps it reports on)"
        )
    modules = Table(
        "nn.Module case", "optlab R=1", "plain loop", "vs plain", "R=8", "R=8 vs plain", "% of peak"
    )
    for name in ("digits", "charlm"):
        r = result[name]
        peak = (
            f"{r['pct_of_peak']:.1f} (plain {r['plain_loop_pct_of_peak']:.1f})"
            if "pct_of_peak" in r
            else "-"
        )
        modules.add_row(
            name,
            f"{r['r1_run_steps_per_s']:,.1f} steps/s",
            f"{r['plain_loop_steps_per_s']:,.1f}",
            f"{r['vs_plain_loop']:.2f}×",
            f"{r['r8_run_steps_per_s']:,.1f} run·steps/s",
            f"{r['stacked_vs_plain_loop']:.2f}×",
            peak,
        )
    console.print(modules)
    for name in ("final", "centers"):
        r = result[name]
        console.print(
            f"{name}, one run with evals: {r['start_steps_per_s']:,.1f} steps/s at the start, "
            f"{r['steady_steps_per_s']:,.1f} after {r['steady_after_steps']:,} steps "
            f"(steady/start {r['steady_vs_start']:.2f}×)"
        )
    k = result["kfac"]
    console.print(
        f"kfac, the digits MLP: {k['fisher_steps_per_s']:,.0f} steps/s (Fisher), "
        f"{k['gauss_newton_steps_per_s']:,.0f} (Gauss-Newton) against AdamW's "
        f"{k['adamw_steps_per_s']:,.0f}: a step costs {k['step_cost_vs_adamw']:.2f}× AdamW's "
        f"({k['gauss_newton_step_cost_vs_adamw']:.2f}× with Gauss-Newton)"
    )
    forced = "" if result["native_bf16"] else " (forced: emulated)"
    console.print(f"bf16 on {result['bf16_support']}{forced}:")
    for name in ("final_bf16", "charlm_bf16"):
        r = result[name]
        console.print(
            f"  {name}: {r['bf16_steps_per_s']:,.2f} steps/s against fp32's "
            f"{r['fp32_steps_per_s']:,.2f}, speedup_vs_fp32 {r['speedup_vs_fp32']:.2f}×"
        )
    for name, g in result["grad_stats"]["overhead"].items():
        console.print(
            f"grad_stats on {name}: {g['default_cadence']:.2f}× a run's time at the default "
            f"cadence (every {g['eval_every']} steps, {g['steps']:,}-step runs), "
            f"{g['every_step']:.2f}× recorded every step ({g['every_step_steps']}-step runs)"
        )
    if "ladder_sweep" in result:
        s = result["ladder_sweep"]
        console.print(
            f"ladder sweep ({s['profile']} profile, {s['seeds']} seeds, {s['runs']} runs): "
            f"{s['wall_s']:.0f} s wall, {s['cpu_s']:.0f} s CPU, cores busy {s['core_busy']:.0%}"
        )
    if "ray" in result:
        r = result["ray"]
        console.print(
            f"ray executor (ladder {r['profile']} profile, {r['seeds']} seeds, {r['runs']} runs): "
            f"{r['ray_run_steps_per_s']:,.0f} run·steps/s against the local pool's "
            f"{r['local_pool_run_steps_per_s']:,.0f}: {r['vs_local_pool']:.2f}× "
            f"(Ray's own start, {r['start_s']:.0f} s, apart)"
        )
    console.print(f"measured in {result['seconds']:.0f} s" + (" (--quick)" if quick else ""))


if __name__ == "__main__":
    app()
