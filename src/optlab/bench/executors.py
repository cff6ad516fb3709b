"""The Ray executor against the local pool: one small sweep trained by each, side by side.

Each executor trains the same runs into a fresh store, as a user's sweep does, on every
core; throughput is run·steps per wall second of the sweep, its workers' start (spawned
processes for the pool, Ray's worker processes importing optlab) included. The local Ray
instance's own start is timed apart (``start_s``): a cluster starts once for many sweeps.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from optlab.config import PlannedRun, expand, load_experiment
from optlab.engine import ray_executor
from optlab.engine.sweep import run_planned
from optlab.store import Store


def ladder_plan(seeds: int) -> list[PlannedRun]:
    """The ladder at its quick profile with ``seeds`` training seeds, as ``--seeds`` counts."""
    spec = load_experiment("ladder")
    first = spec.seeds_for("quick")[0]
    return expand(spec, profile="quick", seeds=list(range(first, first + seeds)))


def sweep_rate(planned: Sequence[PlannedRun], executor: str) -> float:
    """Run·steps per wall second of ``planned`` trained by ``executor`` into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "sweep.db")
        started = time.perf_counter()
        run_planned(planned, store, workers=None, executor=executor)
        seconds = time.perf_counter() - started
        store.close()
    return sum(p.spec.train.steps for p in planned) / seconds


def ray_vs_local_pool(planned: Sequence[PlannedRun]) -> dict:
    """``planned`` by the local pool, then by Ray on a local instance started for it (or the
    cluster this process is connected to)."""
    import ray

    local = sweep_rate(planned, "local")
    ours = not ray.is_initialized()
    started = time.perf_counter()
    ray_executor.start()
    start_s = time.perf_counter() - started
    try:
        rate = sweep_rate(planned, "ray")
    finally:
        if ours:
            ray.shutdown()
    return {
        "runs": len({p.run_id for p in planned}),
        "local_pool_run_steps_per_s": local,
        "ray_run_steps_per_s": rate,
        "vs_local_pool": rate / local,
        "start_s": start_s,
    }
