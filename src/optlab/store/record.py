"""One group's results held in memory, for a driver to write: how a Ray task trains.

``train_group`` writes to whatever it is given through ``start``, ``log`` and ``finish``.
Given a ``GroupRecord`` instead of a ``Store``, a worker on another machine keeps what it
would have written and returns it; the driver, which leased the runs, writes it all in
one transaction (``Store.finish``), so that only the driver ever opens the SQLite file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from optlab.store.sqlite import ArrayRow, MetricRow, Store


@dataclass
class GroupRecord:
    """What a group's training wrote: its numeric path, metric rows, arrays, and each run's
    (run_id, diverged_step, seconds) once it finished."""

    numeric_path: str | None = None
    rows: list[MetricRow] = field(default_factory=list)
    arrays: list[ArrayRow] = field(default_factory=list)
    results: list[tuple[str, int | None, float]] = field(default_factory=list)

    def start(self, run_ids: Sequence[str], numeric_path: str, redo: bool = False) -> list[str]:
        """Every run: the driver leased them before sending the group."""
        self.numeric_path = numeric_path
        return list(run_ids)

    def log(self, rows: list[MetricRow], arrays: Sequence[ArrayRow] = ()) -> None:
        """Keep rows, and copies of arrays: a snapshot may be a view of a tensor that the
        next steps change in place (the store encodes it at once)."""
        self.rows += rows
        self.arrays += [(r, n, s, np.array(a, copy=True)) for r, n, s, a in arrays]

    def finish(
        self,
        results: Sequence[tuple[str, int | None, float]],
        rows: list[MetricRow],
        arrays: Sequence[ArrayRow] = (),
    ) -> None:
        self.log(rows, arrays)
        self.results = list(results)

    def write_to(self, store: Store) -> None:
        """Every run's metrics and arrays, marked done, atomically, along the numeric path the
        worker computed them (its device may not be the driver's)."""
        store.finish(self.results, self.rows, self.arrays, self.numeric_path)
