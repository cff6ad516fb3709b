"""From planned runs to trained ones: skip what the store has done, group the rest, train.

Runs whose computation has the same shape (they differ only in the training seed, numeric
optimizer hyperparameters and a batch controller's threshold) form one group and train as
one stack. Groups are cut into stacks of at most ``max_runs``, and of as many runs as fit
a memory budget (``engine.memory``), and, with ``workers > 1``, trained in a pool of processes that divide
the machine's cores among them (two processes that each take every core slow each other
down many times over); every worker writes to the one store. Where each worker has one
thread (as many workers as cores, the default), a stack that alone outweighs a worker's
share of the sweep is split, so that no core idles while it finishes on another: on one
thread a run's numbers are bitwise the same in any stack (``engine.optimizer``,
``engine.train.eval_pieces``), so splitting changes how long a sweep takes, not its
results. (With several threads torch splits its reductions by tensor size, so a stack's
size can move a run's last bits: stacks are then left whole.) The Ray executor
(``engine.ray_executor``) takes the same stacks and shares of cores, the cluster's CPUs
counting as the cores, and sends each stack to a Ray task; its driver writes the store.
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from optlab.config import ExperimentSpec, PlannedRun, RunSpec
from optlab.engine.memory import runs_that_fit
from optlab.engine.train import Outcome, numeric_path, resolve_device, train_group
from optlab.optim import OPTIMIZERS
from optlab.store import DONE, Store

PER_RUN_NUMBERS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "momentum",
    "alpha",
    "decay_beta",
    "decay_strength",
    "decay_p",
)
PER_RUN_TRAIN = ("seed", "batch_theta", "batch_nu")  # a batch controller's thresholds are (R,)
PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0  # a worker's check that its parent lives, where no signal says so
MAX_RUNS = 64  # runs per stack: past this a stack gains little, and workers balance better


def group_key(spec: RunSpec) -> str:
    """Runs with equal keys can train as one stack."""
    tree = spec.model_dump(mode="json")
    if spec.optimizer.name not in OPTIMIZERS:
        return spec.run_id  # an arbitrary torch.optim.Optimizer trains one run at a time
    for key in PER_RUN_TRAIN:
        del tree["train"][key]
    for key in PER_RUN_NUMBERS:
        del tree["optimizer"][key]
    return json.dumps(tree, sort_keys=True)


def group_runs(
    specs: Sequence[RunSpec], max_runs: int = MAX_RUNS, max_memory: int | None = None
) -> list[list[RunSpec]]:
    """Stackable runs together, in even stacks of at most ``max_runs`` and, given a budget
    of ``max_memory`` bytes per stack, of at most as many runs as fit it; costliest first."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(group_key(spec), []).append(spec)
    stacks = []
    for group in groups.values():
        cap = max_runs if max_memory is None else min(max_runs, runs_that_fit(group[0], max_memory))
        parts = -(-len(group) // cap)
        stacks += [group[i::parts] for i in range(parts)]
    return sorted(stacks, key=cost, reverse=True)


def cost(stack: Sequence[RunSpec]) -> float:
    """A rough work estimate for scheduling: the points each run passes through the model
    (a training point forward and backward counting 3, an eval point 1) × width²."""
    s = stack[0]
    evals = s.train.steps // s.train.eval_every + 1
    points = 3 * s.train.steps * s.train.batch_size + evals * getattr(s.task, "n_eval", 0)
    return len(stack) * points * (s.model.hidden_dim or 1) ** 2


def balance(stacks: list[list[RunSpec]], workers: int) -> list[list[RunSpec]]:
    """Costliest first, each stack that alone outweighs an even share of the work among
    ``workers`` cut into as many even parts as shares it holds: trained greedily in this
    order, the workers finish together rather than all but one waiting for the last stack."""
    share = sum(map(cost, stacks)) / max(1, workers)
    out = []
    for stack in stacks:
        parts = min(len(stack), math.ceil(cost(stack) / share)) if workers > 1 else 1
        out += [stack[i::parts] for i in range(parts)]
    return sorted(out, key=cost, reverse=True)


def pending(planned: Sequence[PlannedRun], store: Store, fresh: bool = False) -> list[RunSpec]:
    """Each distinct run of ``planned`` that the store has not finished (or, ``fresh``, has
    finished along another numeric path than this machine's) and that no other live process
    is training, once."""
    ids = list(dict.fromkeys(p.run_id for p in planned))
    status, leased = store.statuses(ids), store.leased(ids)
    paths = store.paths_of(ids) if fresh else {}

    def todo(p: PlannedRun) -> bool:
        if p.run_id in leased:
            return False
        if status.get(p.run_id) not in DONE:
            return True
        return fresh and paths[p.run_id] != numeric_path(
            p.spec, resolve_device(p.spec.train.device)
        )

    return list({p.run_id: p.spec for p in planned if todo(p)}.values())


def default_workers() -> int:
    return os.cpu_count() or 1


EXECUTORS = ("local", "ray")


def run_planned(
    planned: Sequence[PlannedRun],
    store: Store,
    on_steps: Callable[[int], None] = lambda n: None,
    workers: int | None = 1,
    max_runs: int = MAX_RUNS,
    experiments: Sequence[ExperimentSpec] = (),
    max_memory: int | None = None,
    fresh: bool = False,
    executor: str = "local",
) -> list[Outcome]:
    """Record the plan, then train every pending stack; returns what was trained now.
    ``workers``: stacks trained side by side (None: one per core of the machine, or of the
    Ray cluster). ``max_memory``: bytes for all the training at once, so each of
    ``workers`` stacks gets its share. ``fresh``: also retrain runs done along another
    numeric path than this machine's. ``executor``: ``local`` (this process, or a pool of
    ``workers`` processes) or ``ray`` (a task per stack on the Ray cluster this process is
    connected to, or on a local Ray instance started for it)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not allowed: one of {', '.join(EXECUTORS)}")
    cores = largest = default_workers()
    if executor == "ray":
        from optlab.engine import ray_executor

        ray_executor.start(workers=workers)
        cores, largest = ray_executor.cluster_cpus()
    workers = workers or cores
    store.plan(planned, experiments)
    budget = None if max_memory is None else max_memory // max(1, workers)
    stacks = group_runs(pending(planned, store, fresh), max_runs, budget)
    threads = min(largest, max(1, cores // workers))  # a task fits on one node
    if threads == 1:
        stacks = balance(stacks, workers)
    if executor == "ray":
        return ray_executor.train_stacks(stacks, store, threads, on_steps, fresh)
    if workers <= 1 or len(stacks) <= 1:
        return [o for stack in stacks for o in train_group(stack, store, on_steps, fresh)]
    context = multiprocessing.get_context("spawn")  # no forked OpenMP pools
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(threads, os.getpid())
    ) as pool:
        futures = {
            pool.submit(_train_stack, [s.model_dump() for s in stack], store.path, fresh): stack
            for stack in stacks
        }
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                stack = futures.pop(future)
                outcomes += future.result()
                on_steps(len(stack) * stack[0].train.steps)
    return outcomes


def _worker_init(threads: int, parent: int) -> None:
    """A worker takes its share of the cores, and dies with its parent, so that a killed
    sweep leaves no orphan training on; the next call retrains what was running. On Linux
    the kernel kills it when the parent dies (``PR_SET_PDEATHSIG``); a parent that died
    while the worker was still starting, before that was set, is caught by checking the
    parent right after; and a watcher thread checks it every second everywhere."""
    torch.set_num_threads(threads)
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _train_stack(trees: list[dict], store_path: Path, redo: bool) -> list[Outcome]:
    """One stack in a worker process, with its own store connection."""
    store = Store(store_path)
    try:
        return train_group([RunSpec.model_validate(t) for t in trees], store, redo=redo)
    finally:
        store.close()
