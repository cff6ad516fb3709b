"""The Ray executor: the local pool's runs bitwise, on a local Ray instance and on a simulated
two-node cluster; a worker killed mid-stack has its task retried, each run stored once.

Ray is in the test extra, so a missing Ray fails here rather than skipping. One Ray
instance serves each parameter of the module (start-up takes seconds)."""

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from optlab.config import expand, load_experiment
from optlab.engine import ray_executor, run_planned
from optlab.store import Store

STEPS = 300  # a stack trains for about a second: long enough to be killed mid-way
SMALL = {"train.steps": STEPS, "train.eval_every": 100, "task.n_eval": 100, "task.n_test": 100}


def _sweep():
    """Eight runs in two stacks (relu, gelu) of two learning rates × two seeds, recording
    arrays (snapshots) beside the metrics."""
    spec = load_experiment(
        {
            "name": "ray",
            "base": {
                "model": {"name": "final", "hidden_dim": 8},
                "probes": {"record": ["params", "snapshots"]},
            },
            "cases": {"relu": {}, "gelu": {"model.nonlinearity": "gelu"}},
            "tune": {"optimizer.lr": [1e-3, 1e-2]},
            "seeds": [1, 2],
        }
    )
    return expand(spec, SMALL)


def _content(path: Path) -> dict:
    """What the store holds of each run, every value bitwise: status, diverged step,
    attempts, metrics and arrays."""
    db = sqlite3.connect(path)
    try:
        return {
            "runs": db.execute(
                "SELECT id, status, diverged_step, attempts FROM runs ORDER BY id"
            ).fetchall(),
            "metrics": db.execute("SELECT * FROM metrics ORDER BY 1, 2, 3, 4").fetchall(),
            "arrays": db.execute("SELECT * FROM arrays ORDER BY 1, 2, 3").fetchall(),
        }
    finally:
        db.close()


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory) -> dict:
    """The sweep trained by the local pool, one process per core (each on one thread)."""
    path = tmp_path_factory.mktemp("pool") / "pool.db"
    store = Store(path)
    run_planned(_sweep(), store, workers=os.cpu_count())
    store.close()
    return _content(path)


@pytest.fixture(scope="module", params=["local", "two nodes"])
def cluster(request):
    """A local Ray instance of 2 CPUs, or a cluster of two 1-CPU nodes on this machine."""
    if request.param == "local":
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        yield
        ray.shutdown()
        return
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    ray_executor.start(nodes.address)  # as --address joins a cluster
    assert ray_executor.cluster_cpus() == (2, 1)
    yield
    ray.shutdown()
    nodes.shutdown()


def test_the_store_holds_the_local_pools_runs_bitwise(cluster, pool_store, tmp_path):
    store = Store(tmp_path / "ray.db")
    trained = run_planned(_sweep(), store, workers=None, executor="ray")
    store.close()
    content = _content(tmp_path / "ray.db")
    assert len(trained) == 8 and len(content["runs"]) == 8
    assert {r[1] for r in content["runs"]} == {"complete"}
    assert len(content["arrays"]) > 0
    assert content == pool_store


def test_a_killed_worker_is_retried_and_each_run_stored_once(cluster, pool_store, tmp_path):
    killed = []
    watcher = threading.Thread(target=_kill_first_training_worker, args=(killed,), daemon=True)
    watcher.start()
    store = Store(tmp_path / "ray.db")
    trained = run_planned(_sweep(), store, workers=None, executor="ray")
    watcher.join()
    store.close()
    assert len(killed) == 1  # a worker died mid-stack
    assert sorted(o.run_id for o in trained) == sorted(r[0] for r in pool_store["runs"])
    content = _content(tmp_path / "ray.db")
    # each run leased once by the driver, its train loss once per step: 8 × STEPS rows
    assert [r[3] for r in content["runs"]] == [1] * 8
    assert sum(m[1:3] == ("train", "loss") for m in content["metrics"]) == 8 * STEPS
    assert content == pool_store


def _kill_first_training_worker(killed: list[int], timeout: float = 60.0) -> None:
    """SIGKILL the first of this process's Ray workers seen training a stack."""
    deadline = time.monotonic() + timeout
    while not killed and time.monotonic() < deadline:
        for pid in _descendants(os.getpid()):
            if _cmdline(pid).startswith(b"ray::train_stack"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.01)


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [root]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        out += children
        frontier = children
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
