"""Two sweeps on one store train each run once; a killed sweep leaves no process behind."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from optlab.config import expand, load_experiment
from optlab.store import Store

# six stacks (centers at six widths) of two seeds, a second or two each
EXPERIMENT = """
name = "leases"
seeds = [1, 2]
[base.model]
name = "centers"
[base.train]
steps = 300
eval_every = 50
[base.task]
n_eval = 200
n_test = 200
[grid]
"model.hidden_dim" = [8, 16, 24, 32, 40, 48]
"""


def _planned(tmp_path: Path):
    path = tmp_path / "leases.toml"
    path.write_text(EXPERIMENT)
    return path, expand(load_experiment(path))


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_lease_holds_while_its_process_lives_and_lapses_when_it_dies(tmp_path):
    _, planned = _planned(tmp_path)
    ids = [p.run_id for p in planned[:3]]
    store = Store(tmp_path / "s.db")
    store.plan(planned)
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)

    here = socket.gethostname()

    def lease(pid, host=here, heartbeat=None):
        db.execute(
            "UPDATE runs SET status = 'running', lease_pid = ?, lease_host = ?, heartbeat = ? "
            "WHERE id = ?",
            (pid, host, time.time() if heartbeat is None else heartbeat, ids[0]),
        )

    lease(os.getppid())  # a live process other than this one
    assert store.leased(ids) == {ids[0]} and store.start(ids, "cpu") == ids[1:]
    lease(_dead_pid())  # its process is gone: the run is free again
    assert store.leased(ids) == set() and store.start(ids[:1], "cpu") == ids[:1]
    lease(12345, host="elsewhere")  # another host's fresh heartbeat holds
    assert store.start(ids[:1], "cpu") == []
    lease(12345, host="elsewhere", heartbeat=time.time() - 3600)  # a stale one does not
    assert store.start(ids[:1], "cpu") == ids[:1]
    attempts = dict(db.execute("SELECT id, attempts FROM runs").fetchall())
    assert [attempts[i] for i in ids] == [2, 1, 1]
    store.finish([(i, None, 1.0) for i in ids], [])
    assert store.start(ids, "cpu") == []  # done runs are not trained again


def _optlab(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optlab.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _rows(db_path: Path, sql: str) -> list:
    try:
        with sqlite3.connect(db_path, timeout=30) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def test_two_sweeps_on_one_store_train_every_run_once_through_a_kill(tmp_path):
    spec, planned = _planned(tmp_path)
    db = tmp_path / "s.db"
    args = ("run", str(spec), "--store", str(db), "--workers", "1")
    first = _optlab(*args)
    _wait_for(lambda: _rows(db, "SELECT 1 FROM runs WHERE status = 'running'"))
    second = _optlab(*args)
    # kill the first once it has finished a stack and is training another
    _wait_for(
        lambda: _rows(
            db,
            f"SELECT 1 FROM runs WHERE lease_pid = {first.pid} AND status = 'running' AND "
            f"EXISTS (SELECT 1 FROM runs WHERE status = 'complete' AND attempts = 1)",
        )
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = {r[0] for r in _rows(db, f"SELECT id FROM runs WHERE lease_pid = {first.pid}")}
    assert second.wait(timeout=300) == 0
    assert _optlab(*args).wait(timeout=300) == 0  # resumes what the kill interrupted
    runs = dict(_rows(db, "SELECT id, attempts FROM runs WHERE status = 'complete'"))
    assert set(runs) == {p.run_id for p in planned}
    assert killed and all(runs[i] == 2 for i in killed)
    assert all(n == 1 for i, n in runs.items() if i not in killed)  # no run trained twice
    evals = _rows(
        db,
        "SELECT run_id, COUNT(*) FROM metrics WHERE split = 'eval' AND name = "
        "'loss' GROUP BY run_id",
    )
    assert {n for _, n in evals} == {300 // 50 + 1}  # steps 0, 50, …, 300: none doubled


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("moment", ["importing", "workers starting", "training"])
def test_a_killed_sweep_leaves_no_process_behind(tmp_path, moment):
    spec, _ = _planned(tmp_path)
    db, marker = tmp_path / "s.db", f"OPTLAB_TEST_SWEEP={uuid.uuid4()}"
    key, value = marker.split("=")
    parent = _optlab("run", str(spec), "--store", str(db), "--workers", "2", env={key: value})
    if moment == "importing":
        time.sleep(0.3)
    elif moment == "workers starting":  # the pool's first processes exist, none trains yet
        _wait_for(lambda: len(_processes_with(marker)) > 1)
    else:
        _wait_for(lambda: _rows(db, "SELECT 1 FROM runs WHERE status = 'running'"))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60  # a worker still importing torch on a busy machine
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _processes_with(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
