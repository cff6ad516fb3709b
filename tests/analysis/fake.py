"""Synthetic stores: planned runs of a real experiment spec, with chosen final metrics."""

from collections.abc import Callable

from optlab.config import PlannedRun, expand, load_experiment
from optlab.store import Store

Finals = Callable[[PlannedRun], dict[str, float]]


def fake_store(
    path,
    spec: dict,
    finals: Finals,
    params: Callable | None = None,
    done: Callable[[PlannedRun], bool] | None = None,
) -> Store:
    """Plan ``spec``'s runs and finish each with ``finals(run)`` ({"test_accuracy": …}) at step
    100, and optionally ``params(run)`` rows {metric name: [(step, value), …]} (split params).
    With ``done``, the runs it rejects stay pending (the analysis reads finished runs only)."""
    experiment = load_experiment(spec)
    planned = expand(experiment)
    store = Store(path)
    store.plan(planned, [experiment])
    for run in {p.run_id: p for p in planned}.values():
        if done is not None and not done(run):
            continue
        store.start([run.run_id], "cpu")
        rows = []
        for key, value in finals(run).items():
            split, name = key.split("_", 1)
            rows.append((run.run_id, split, name, 100, value))
        for name, series in (params(run) if params else {}).items():
            rows += [(run.run_id, "params", name, step, value) for step, value in series]
        diverged = 50 if finals(run).get("eval_loss") != finals(run).get("eval_loss") else None
        store.finish([(run.run_id, diverged, 1.0)], rows)
    return store
