"""The grad_stats probe's cost (``grad_stats.overhead`` in ``optlab bench``), side by side.

For ``centers`` (batch 32, eval of 10k points every 50 steps), the final model (hidden 512,
batch 1024, the same cadence) and ``charlm`` (the catalog's transformer, eval every 250
steps on a small eval set): the wall time of one run with the probe at its default cadence
(the eval cadence) over the same run without it, and over a shorter run the same with the
probe recorded every step (``probes.grad_every = 1``). Each variant is timed whole, as a
user's run is (build, evals, store), alternated ``repeats`` times, best of each; a run of two
steps with the probe first pays the process's one-time costs (``vmap``'s tracing where the
model is not taped: seconds).
Cockpit's anchor: about 1.5× at every step for its cheapest bundle.
"""

from __future__ import annotations

import time

from optlab.bench import modules
from optlab.config import ProbeSpec, RunSpec
from optlab.engine.train import task_for, train_group
from optlab.store import Store


def with_grad_stats(spec: RunSpec, grad_every: int | None) -> RunSpec:
    """``spec`` recording grad_stats too, every ``grad_every`` steps (None: the eval cadence)."""
    record = (*spec.probes.record, "grad_stats")
    probes = ProbeSpec(record=record, array_every=spec.probes.array_every, grad_every=grad_every)
    return spec.model_copy(update={"probes": probes})


def run_seconds(spec: RunSpec, store: Store) -> float:
    start = time.perf_counter()
    train_group([spec], store, redo=True)
    return time.perf_counter() - start


def overhead(spec: RunSpec, every_step_steps: int, store: Store, repeats: int) -> dict:
    """The default cadence's ratio on ``spec``, and every step's on ``spec`` cut to
    ``every_step_steps`` steps, each against the run without the probe."""
    task_for(spec)  # data built once, outside every timing
    train_group([with_grad_stats(spec.with_train(steps=2), None)], store, redo=True)
    short = spec.with_train(steps=every_step_steps)
    variants = {
        "without": spec,
        "default": with_grad_stats(spec, None),
        "short_without": short,
        "every_step": with_grad_stats(short, 1),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for name, variant in variants.items():
            best[name] = min(best[name], run_seconds(variant, store))
    return {
        "steps": spec.train.steps,
        "eval_every": spec.train.eval_every,
        "seconds_without": best["without"],
        "seconds_default": best["default"],
        "default_cadence": best["default"] / best["without"],
        "every_step_steps": every_step_steps,
        "seconds_every_step": best["every_step"],
        "seconds_every_step_without": best["short_without"],
        "every_step": best["every_step"] / best["short_without"],
    }


def charlm_spec(steps: int, eval_every: int) -> RunSpec:
    """The catalog's charlm run (its paper profile) for ``steps`` steps, evaluated every
    ``eval_every`` on the bench's small eval set, on CPU."""
    return modules.catalog_spec("charlm", steps).with_train(eval_every=eval_every)
