"""One numeric path per analysis: runs of one id computed along two paths (another torch,
the fused kernel or the pure rule, compiled or eager, bf16 autocast or not) agree only up to
float rounding, which the chaotic runs of this field amplify into different outcomes. So
the statistics and verdicts of a store compare the runs of one path, the one that computed
most of them, and say what they leave out.

A path is its machine part and, after " | ", the update (``engine.train.numeric_path``).
Runs are compared by the machine part: on one machine the update follows from a run's
config (AdamW with L2 decay takes the fused kernel where it agrees with the rule, L1 decay
the pure rule), so cases that differ in it are still compared, as are cases that differ in
their ``train.dtype``; one config computed by another torch or device is not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optlab.store import Store


@dataclass(frozen=True)
class Compared:
    """The numeric path an analysis compares, and the done runs of other paths it leaves out."""

    path: str | None
    runs: int
    others: dict[str, int]

    def note(self) -> str | None:
        """A line for the reader where the store holds other paths, else None."""
        if not self.others:
            return None
        left = ", ".join(f"{n} computed as {p}" for p, n in self.others.items())
        return (
            f"Compared: the {self.runs} runs computed as {self.path}; not compared: {left} "
            "(--fresh retrains them along this machine's path)."
        )


CONFIG_DTYPES = ("float32", "float64")  # train.dtype: in the run's id, as its lr is


def machine_part(path: str) -> str:
    """A numeric path without its update and without the dtype its config sets: what the
    runs of one analysis must share. Cases that differ in ``train.dtype`` are different
    configs, compared as cases that differ in their learning rate are (the theory suite's
    float64 identities beside its float32 K-FAC runs)."""
    parts = path.split(" | ")[0].split(", ")
    return ", ".join(p for p in parts if p not in CONFIG_DTYPES)


def compare_one_path(store: Store, experiments: Iterable[str] | None = None) -> Compared:
    """Restrict ``store.runs()`` to the machine part of the numeric path most done runs (of
    ``experiments``) were computed along; returns it and what the restriction leaves out."""
    counts: dict[str, int] = {}
    for path, n in store.numeric_paths(experiments).items():
        counts[machine_part(path)] = counts.get(machine_part(path), 0) + n
    if not counts:
        return Compared(None, 0, {})
    path = max(counts, key=counts.get)
    store.compare_only(path, machine_part)
    return Compared(path, counts[path], {p: n for p, n in counts.items() if p != path})
