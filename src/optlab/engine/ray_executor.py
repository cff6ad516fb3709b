"""Stacks as Ray tasks, for sweeps across machines; only the driver writes the store.

Each stack is one Ray task that asks for the cores its threads use, the local pool's share
(``engine.sweep``). The task trains into a ``GroupRecord`` held in memory and returns it;
the driver, which leased the stack's runs before sending it, writes each record as it
comes back, in one transaction. Workers never open the SQLite file (SQLite is unsafe on
network file systems), and leases, resume and integrity are the store's as with the pool:
the driver's leases lapse when it dies, and a run is marked done with its metrics or not
at all. A worker that dies mid-task (killed, its node lost) wrote nothing: Ray runs the
task again, up to ``MAX_RETRIES`` times, so the store ends with each run once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

import torch

from optlab.config import RunSpec
from optlab.engine.train import Outcome, numeric_path, resolve_device, train_group
from optlab.store import Store
from optlab.store.record import GroupRecord

MAX_RETRIES = 3  # Ray's max_retries: runs of a task again after its worker died
INSTALL = "pip install 'optlab[ray]'"
CONNECT_TIMEOUT_S = 5.0


def available() -> bool:
    """Whether Ray is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def start(address: str | None = None, workers: int | None = None) -> None:
    """Join the Ray cluster at ``address``, or start a local instance with the CPUs that
    ``workers`` processes of the local pool would use (default: one per core); nothing
    where this process is already connected. A cluster that cannot be reached, or that has
    no CPUs for tasks, raises ``ConnectionError``."""
    import ray

    if ray.is_initialized():
        return
    quiet = {"logging_level": logging.WARNING, "include_dashboard": False}
    if address is not None:
        check_reachable(address)
        ray.init(address=address, **quiet)
        if cluster_cpus()[0] == 0:
            ray.shutdown()
            raise ConnectionError("its nodes offer no CPUs to tasks")
        return
    cores = os.cpu_count() or 1
    workers = workers or cores
    ray.init(address="local", num_cpus=workers * max(1, cores // workers), **quiet)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``ConnectionError`` where ``address`` names a host and port (``host:port`` or
    ``ray://host:port``) that takes no TCP connection within ``timeout`` seconds: Ray
    itself would retry for minutes. ``auto`` and other forms are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {host}:{port} ({err})") from None


def cluster_cpus() -> tuple[int, int]:
    """The CPUs of the connected Ray cluster: all of them, and its largest node's."""
    import ray

    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]]
    return int(sum(nodes)), int(max(nodes, default=0))


def train_stacks(
    stacks: Sequence[Sequence[RunSpec]],
    store: Store,
    threads: int,
    on_steps: Callable[[int], None] = lambda n: None,
    redo: bool = False,
) -> list[Outcome]:
    """Lease each stack's runs, train each as a task of ``threads`` CPUs, and write each
    record to ``store`` as it arrives; returns what was trained. A task that fails for a
    reason other than its worker's death cancels the rest and raises."""
    import ray

    task = ray.remote(train_stack).options(num_cpus=threads, max_retries=MAX_RETRIES)
    futures: dict[ray.ObjectRef, list[RunSpec]] = {}
    for stack in stacks:
        path = numeric_path(stack[0], resolve_device(stack[0].train.device))
        leased = set(store.start([s.run_id for s in stack], path, redo))
        stack = [s for s in stack if s.run_id in leased]
        if stack:
            trees = [s.model_dump() for s in stack]
            futures[task.remote(trees, threads)] = stack
    outcomes: list[Outcome] = []
    try:
        while futures:
            done, _ = ray.wait(list(futures), num_returns=1)
            stack = futures.pop(done[0])
            trained, record = ray.get(done[0])
            record.write_to(store)
            outcomes += trained
            on_steps(len(stack) * stack[0].train.steps)
    finally:
        for future in futures:
            ray.cancel(future, force=True)
    return outcomes


def train_stack(trees: list[dict], threads: int) -> tuple[list[Outcome], GroupRecord]:
    """One stack in a Ray worker, on ``threads`` threads, into a record for the driver."""
    torch.set_num_threads(threads)
    record = GroupRecord()
    specs = [RunSpec.model_validate(t) for t in trees]
    return train_group(specs, record), record
