"""The embedded store: one SQLite file (WAL mode) holding runs, scalar metrics and arrays.

A run row is written as ``pending`` when planned, becomes ``running`` when its group
starts (its old metrics, if an interrupted attempt left any, are deleted), and
``complete`` or ``diverged`` in the same transaction that writes its final metrics.
So a crash never leaves a half-written run marked done, and a run that is not done
is trained again from scratch on the next call.

A running run is leased to the process that trains it (its pid and host, and a heartbeat
renewed whenever it logs): another process on the same store leaves it alone until the
lease is stale, its process gone (same host) or its heartbeat older than
``LEASE_TIMEOUT`` seconds (another host), so two sweeps on one store train each run once.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from optlab.errors import StoreError

DONE = ("complete", "diverged")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    diverged_step INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    train_seconds REAL,
    device TEXT,  -- before numeric paths were recorded: the device, compiled or flushed
    versions TEXT,
    numeric_path TEXT,
    lease_pid INTEGER,
    lease_host TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiment_runs (
    experiment TEXT NOT NULL,
    case_name TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(id),
    PRIMARY KEY (experiment, run_id)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    step INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, split, name, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS arrays (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    step INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, name, step)
);
"""

# columns added to ``runs`` after stores existed: added to an old store when it is opened
ADDED_COLUMNS = {
    "numeric_path": "TEXT",
    "lease_pid": "INTEGER",
    "lease_host": "TEXT",
    "heartbeat": "REAL",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
}
MAX_VARIABLES = 500  # per statement: SQLite allows 999 before 3.32, 32,766 since
# a run's numeric path as runs() gives it: runs of a store from before paths were recorded
# name their device (and compiled / flushed) instead
PATH_SQL = "COALESCE(r.numeric_path, 'not recorded (' || COALESCE(r.device, '?') || ')')"
LEASE_TIMEOUT = 1800.0  # seconds without a heartbeat before another host's lease is stale

MetricRow = tuple[str, str, str, int, float]  # run_id, split, name, step, value
ArrayRow = tuple[str, str, int, np.ndarray]  # run_id, name, step, array


def versions() -> dict[str, str]:
    import torch

    found = {
        "optlab": importlib.metadata.version("optlab"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    return found | ({"commit": commit()} if commit() else {})


@functools.cache
def commit() -> str | None:
    """optlab's git commit where it runs from its own checkout (``+`` if tracked files have
    changes); None for an installed package, or one that lies in another project's tree."""
    spec = importlib.util.find_spec("optlab")
    if spec is None or spec.origin is None:
        return None
    where = Path(spec.origin).parent
    try:
        top = _git(where, "rev-parse", "--show-toplevel")
        if Path(top).resolve() / "src" / "optlab" != where.resolve():
            return None
        dirty = _git(where, "status", "--porcelain", "--untracked-files=no")
        return _git(where, "rev-parse", "--short", "HEAD") + ("+" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _git(where: Path, *args: str) -> str:
    run = subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return run.stdout.strip()


class Store:
    """Results of every run, keyed by run id (the hash of its resolved config)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise StoreError(f"--store: {str(path)!r} is not an optlab store ({err})") from None
        self.compared: tuple[str, Callable[[str], str]] | None = None  # see compare_only
        self.analyzed: frozenset[str] | None = None  # see analyze_only

    def close(self) -> None:
        self.db.close()

    def _tx(self, statements: Iterable[tuple[str, Sequence | Iterable[Sequence]]]) -> None:
        """Run (sql, params) pairs in one transaction; a list of tuples means executemany."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                if isinstance(params, list):
                    self.db.executemany(sql, params)
                else:
                    self.db.execute(sql, params)

    # ---- writing -------------------------------------------------------------------------

    def plan(self, runs: Iterable, experiments: Iterable = ()) -> None:
        """Record planned runs (``optlab.config.PlannedRun``) that the store does not know yet,
        and the specs of their experiments (the analysis reads cases and tuning axes there)."""
        now = time.time()
        rows = [(r.run_id, r.spec.model_dump_json(), now) for r in runs]
        links = [(r.experiment, r.case, r.run_id) for r in runs]
        specs = [(e.name, e.model_dump_json()) for e in experiments]
        self._tx(
            [
                ("INSERT OR REPLACE INTO experiments VALUES (?, ?)", specs),
                (
                    "INSERT OR IGNORE INTO runs (id, config, status, created) VALUES (?, ?, 'pending', ?)",
                    rows,
                ),
                ("INSERT OR IGNORE INTO experiment_runs VALUES (?, ?, ?)", links),
            ]
        )

    def start(self, run_ids: Sequence[str], numeric_path: str, redo: bool = False) -> list[str]:
        """Lease to this process those of ``run_ids`` that are neither leased to a live
        process nor (unless ``redo``) done, mark them running and drop what an earlier
        attempt left; returns them."""
        now, pid, host = time.time(), os.getpid(), socket.gethostname()
        meta = json.dumps(versions())
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self._select(
                "SELECT id, status, lease_pid, lease_host, heartbeat FROM runs", list(run_ids)
            )
            taken = {
                i
                for i, status, *lease in rows
                if (status in DONE and not redo) or _live(status, *lease)
            }
            free = set(run_ids) - taken  # a run the store was not told of is free too
            ids = [(i,) for i in run_ids if i in free]
            self.db.executemany("DELETE FROM metrics WHERE run_id = ?", ids)
            self.db.executemany("DELETE FROM arrays WHERE run_id = ?", ids)
            self.db.executemany(
                "UPDATE runs SET status = 'running', started = ?, numeric_path = ?, versions = ?, "
                "diverged_step = NULL, lease_pid = ?, lease_host = ?, heartbeat = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                [(now, numeric_path, meta, pid, host, now, i) for (i,) in ids],
            )
        return [i for (i,) in ids]

    def leased(self, run_ids: Sequence[str]) -> set[str]:
        """Those of ``run_ids`` running under a live lease (another process is training them)."""
        rows = self._select(
            "SELECT id, status, lease_pid, lease_host, heartbeat FROM runs", list(run_ids)
        )
        return {i for i, *state in rows if _live(*state)}

    def log(self, rows: list[MetricRow], arrays: Sequence[ArrayRow] = ()) -> None:
        """Append metric rows (and arrays) of running runs, renewing their leases."""
        beats = [(time.time(), i) for i in dict.fromkeys(r[0] for r in rows)]
        self._tx([*_inserts(rows, arrays), ("UPDATE runs SET heartbeat = ? WHERE id = ?", beats)])

    def finish(
        self,
        results: Sequence[tuple[str, int | None, float]],
        rows: list[MetricRow],
        arrays: Sequence[ArrayRow] = (),
        numeric_path: str | None = None,
    ) -> None:
        """Write final metrics (and arrays) and mark each (run_id, diverged_step, seconds) done,
        atomically; ``numeric_path``, where given, replaces the one the runs were leased
        under (a Ray worker computed them on its own device)."""
        now = time.time()
        updates = [
            ("complete" if d is None else "diverged", d, now, s, numeric_path, i)
            for i, d, s in results
        ]
        self._tx(
            [
                *_inserts(rows, arrays),
                (
                    "UPDATE runs SET status = ?, diverged_step = ?, finished = ?, train_seconds = ?, "
                    "numeric_path = COALESCE(?, numeric_path), lease_pid = NULL, lease_host = NULL "
                    "WHERE id = ?",
                    updates,
                ),
            ]
        )

    # ---- reading -------------------------------------------------------------------------

    def experiments(self) -> dict[str, dict]:
        """The recorded experiment specs, by name, as plain dicts."""
        rows = self.db.execute("SELECT name, spec FROM experiments").fetchall()
        return {name: json.loads(spec) for name, spec in rows}

    def statuses(self, run_ids: Sequence[str]) -> dict[str, str]:
        return dict(self._select("SELECT id, status FROM runs", list(run_ids)))

    def paths_of(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """Each run's recorded numeric path (None before it trained, or in an old store)."""
        return dict(self._select("SELECT id, numeric_path FROM runs", list(run_ids)))

    def _select(self, sql: str, run_ids: list[str]) -> list[tuple]:
        """``sql … WHERE id IN (run_ids)``, in chunks within SQLite's variable limit."""
        out = []
        for lo in range(0, len(run_ids), MAX_VARIABLES):
            chunk = run_ids[lo : lo + MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            out += self.db.execute(f"{sql} WHERE id IN ({marks})", chunk).fetchall()
        return out

    def runs(self, experiment: str | None = None) -> pd.DataFrame:
        """One row per (experiment, run): ids, status, timings, and the config flattened."""
        sql = (
            f"SELECT e.experiment, e.case_name AS 'case', r.*, {PATH_SQL} AS path "
            "FROM experiment_runs e JOIN runs r ON r.id = e.run_id"
        )
        params: tuple = ()
        if experiment is not None:
            sql += " WHERE e.experiment = ?"
            params = (experiment,)
        df = pd.read_sql_query(sql + " ORDER BY e.rowid", self.db, params=params)
        if df.empty:
            return df
        df["numeric_path"] = df.pop("path")
        if self.analyzed is not None:
            df = df[df["id"].isin(self.analyzed)].reset_index(drop=True)
        if self.compared is not None:
            path, key = self.compared
            kept = df["numeric_path"].map(key) == path
            df = df[~df["status"].isin(DONE) | kept].reset_index(drop=True)
        config = pd.json_normalize([json.loads(c) for c in df.pop("config")])
        return pd.concat([df, config], axis=1)

    def numeric_paths(self, experiments: Iterable[str] | None = None) -> dict[str, int]:
        """How many done runs (of some experiments) each numeric path computed, most first."""
        names = None if experiments is None else list(experiments)
        where = "" if names is None else f" AND e.experiment IN ({','.join('?' * len(names))})"
        rows = self.db.execute(
            f"SELECT {PATH_SQL}, COUNT(DISTINCT r.id) FROM experiment_runs e "
            f"JOIN runs r ON r.id = e.run_id WHERE r.status IN {DONE}{where} "
            "GROUP BY 1 ORDER BY 2 DESC",
            names or (),
        ).fetchall()
        return dict(rows)

    def compare_only(
        self, numeric_path: str | None, key: Callable[[str], str] = lambda path: path
    ) -> None:
        """From now on ``runs()`` keeps the done runs whose ``key(numeric path)`` is
        ``numeric_path`` (None: all runs), so that an analysis does not mix runs computed
        along different paths."""
        self.compared = None if numeric_path is None else (numeric_path, key)

    def analyze_only(self, run_ids: Iterable[str] | None) -> None:
        """From now on ``runs()`` keeps only ``run_ids`` (None: all runs): the runs a sweep
        just planned, so that runs of another profile, or of a case's older config, that the
        store links to the same cases stay out of its analysis."""
        self.analyzed = None if run_ids is None else frozenset(run_ids)

    def metrics(
        self, run_ids: Sequence[str] | None = None, split: str | Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Long-form metrics, of some runs and some splits (one or several) when asked; many
        runs are read in chunks within SQLite's variable limit."""
        if run_ids is not None and len(run_ids) > MAX_VARIABLES:
            ids = list(run_ids)
            parts = [
                self.metrics(ids[lo : lo + MAX_VARIABLES], split)
                for lo in range(0, len(ids), MAX_VARIABLES)
            ]
            return pd.concat(parts).sort_values(
                ["run_id", "split", "name", "step"], ignore_index=True
            )
        where, params = [], ()
        if run_ids is not None:
            where.append(f"run_id IN ({','.join('?' * len(run_ids))})")
            params = tuple(run_ids)
        if split is not None:
            splits = (split,) if isinstance(split, str) else tuple(split)
            where.append(f"split IN ({','.join('?' * len(splits))})")
            params += splits
        sql = "SELECT * FROM metrics" + (" WHERE " + " AND ".join(where) if where else "")
        return pd.read_sql_query(
            sql + " ORDER BY run_id, split, name, step", self.db, params=params
        )

    def final_metrics(self) -> dict[str, dict[str, float]]:
        """Each run's eval and test metrics and its scalars at their last recorded step:
        {run_id: {test_loss: …, scalars_generalizer: …}}."""
        rows = self.db.execute(
            "SELECT m.run_id, m.split || '_' || m.name, m.value FROM metrics m JOIN ("
            "  SELECT run_id, split, name, MAX(step) AS step FROM metrics"
            "  WHERE split IN ('eval', 'test', 'scalars') GROUP BY run_id, split, name) last "
            "USING (run_id, split, name, step)"
        ).fetchall()
        out: dict[str, dict[str, float]] = {}
        for run_id, key, value in rows:
            out.setdefault(run_id, {})[key] = value
        return out

    def array(self, run_id: str, name: str) -> dict[int, np.ndarray]:
        """Every recorded step of one named array of a run."""
        rows = self.db.execute(
            "SELECT step, data FROM arrays WHERE run_id = ? AND name = ? ORDER BY step",
            (run_id, name),
        ).fetchall()
        return {step: np.load(io.BytesIO(data)) for step, data in rows}

    def array_names(self, run_id: str) -> list[str]:
        """The names of a run's recorded arrays."""
        rows = self.db.execute(
            "SELECT DISTINCT name FROM arrays WHERE run_id = ? ORDER BY name", (run_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def bytes_used(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))


def _inserts(rows: list[MetricRow], arrays: Sequence[ArrayRow]) -> list:
    return [
        ("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", rows),
        (
            "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?)",
            [(r, n, s, _encode(a)) for r, n, s, a in arrays],
        ),
    ]


def _encode(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _live(status: str, pid: int | None, host: str | None, heartbeat: float | None) -> bool:
    """Whether a run's lease holds against this process: it is running, leased to another
    process, and that process lives (on this host) or has logged within ``LEASE_TIMEOUT``
    seconds (on another). This process's own leases are those of an attempt it abandoned."""
    if status != "running" or pid is None:
        return False
    if pid == os.getpid() and host == socket.gethostname():
        return False
    if host != socket.gethostname():
        return heartbeat is not None and time.time() - heartbeat < LEASE_TIMEOUT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True
