"""Where results live: the SQLite store, and ``load`` for pandas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optlab.store.sqlite import DONE, Store

DEFAULT_STORE = Path("results/optlab.db")  # every command's --store default


@dataclass(frozen=True)
class Results:
    runs: pd.DataFrame  # one row per (experiment, run), config flattened into columns
    metrics: pd.DataFrame  # long form: run_id, split, name, step, value


def load(path: str | Path = DEFAULT_STORE) -> Results:
    """The store at ``path`` as pandas DataFrames."""
    if not Path(path).exists():
        raise FileNotFoundError(f"--store: {str(path)!r} does not exist")
    store = Store(path)
    try:
        return Results(runs=store.runs(), metrics=store.metrics())
    finally:
        store.close()


__all__ = ["DEFAULT_STORE", "DONE", "Results", "Store", "load"]
