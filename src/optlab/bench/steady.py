"""A run's steady state against its start: the speed a user waits for over a whole run.

A few hundred steps from initialisation miss what happens once the weights have trained a
while: on x86 CPUs, Adam's second moments of tiny gradients and activations after decay
fall into the subnormal range, where arithmetic is many times slower, and a run that
started at 40 steps/s ends at 20 (optlab flushes subnormals to zero by default,
``train.flush_subnormals``). So the bench times one real run, evals at its cadence
included, and compares its last window with its first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from optlab.config import RunSpec
from optlab.engine.train import train_group
from optlab.store import Store


@dataclass(frozen=True)
class Windows:
    """Steps/s of one run over its first and its last ``window`` steps."""

    start_steps_per_s: float
    steady_steps_per_s: float
    window: int

    @property
    def steady_vs_start(self) -> float:
        return self.steady_steps_per_s / self.start_steps_per_s


def window_rates(marks: list[tuple[int, float]], window: int) -> Windows:
    """From (steps done, time) marks taken at the eval cadence: the rate between the first
    mark and the first ``window`` steps after it, and over the last ``window`` steps."""
    first, last = marks[0], marks[-1]
    if last[0] - first[0] < 2 * window:
        raise ValueError(f"window: {window} steps need a run of at least {2 * window} marked")
    start_end = next(m for m in marks if m[0] - first[0] >= window)
    steady_begin = next(m for m in reversed(marks) if last[0] - m[0] >= window)
    return Windows(
        (start_end[0] - first[0]) / (start_end[1] - first[1]),
        (last[0] - steady_begin[0]) / (last[1] - steady_begin[1]),
        window,
    )


def steady_vs_start(spec: RunSpec, store: Store, window: int) -> Windows:
    """Train one run of ``spec`` as ``optlab run`` would and time its windows. The first mark
    is the first eval point, so model building and the first eval are left out of both."""
    marks: list[tuple[int, float]] = []
    done = 0

    def mark(steps: int) -> None:
        nonlocal done
        done += steps
        if steps:
            marks.append((done, time.perf_counter()))

    train_group([spec], store, mark, redo=True)
    return window_rates(marks, window)
