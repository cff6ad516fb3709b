"""Synthetic stores: planned runs of a real experiment spec, with chosen final metrics."""

from collections.abc import Callable

from optlab.config import PlannedRun, expand, load_experiment
from optlab.store import Store

Finals = Callable[[PlannedRun], dict[str, float]]
Series = dict[str, list[tuple[int, float]]]


def fake_store(
    path,
    spec: dict,
    finals: Finals,
    params: Callable[[PlannedRun], Series] | None = None,
    done: Callable[[PlannedRun], bool] | None = None,
    curves: Callable[[PlannedRun], dict[str, Series]] | None = None,
    path_of: Callable[[PlannedRun], str] = lambda run: "cpu",
) -> Store:
    """Plan ``spec``'s runs and finish each with ``finals(run)`` ({"test_accuracy": …}) at step
    100 (or at the last step of its curves), optionally ``params(run)`` rows {metric name:
    [(step, value), …]} (split params) and ``curves(run)`` rows {split: {name: [(step,
    value), …]}}; where a curve reaches that step, its point stands for the final value.
    With ``done``, the runs it rejects stay pending (the analysis reads finished runs only);
    ``path_of(run)`` is the numeric path each is recorded as computed along."""
    experiment = load_experiment(spec)
    planned = expand(experiment)
    store = Store(path)
    store.plan(planned, [experiment])
    for run in {p.run_id: p for p in planned}.values():
        if done is not None and not done(run):
            continue
        store.start([run.run_id], path_of(run))
        series = {"params": params(run)} if params else {}
        for split, named in (curves(run) if curves else {}).items():
            series.setdefault(split, {}).update(named)
        rows = {
            (split, name, step): value
            for split, named in series.items()
            for name, points in named.items()
            for step, value in points
        }
        last = max([100, *(step for _, _, step in rows)])
        for key, value in finals(run).items():
            split, name = key.split("_", 1)
            rows.setdefault((split, name, last), value)
        diverged = 50 if finals(run).get("eval_loss") != finals(run).get("eval_loss") else None
        run_id = run.run_id  # computed from the spec: once per run, not per row
        store.finish(
            [(run_id, diverged, 1.0)],
            [(run_id, split, name, step, value) for (split, name, step), value in rows.items()],
        )
    return store
