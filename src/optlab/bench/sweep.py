"""A whole sweep as a user runs it: ``optlab run ladder --seeds 5`` on a fresh store.

Rates of single runs cannot see a sweep that leaves cores idle while its longest stack
finishes on one of them; this times the sweep itself: wall seconds, CPU seconds of the
driver and its workers, and how busy the machine's cores were (CPU ÷ (wall × cores)).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

from optlab.config import expand, load_experiment
from optlab.engine.sweep import default_workers, run_planned
from optlab.store import Store


def cpu_seconds() -> float:
    """User and system seconds of this process and of its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def ladder_sweep(profile: str = "paper", seeds: int = 5) -> dict:
    """The ladder at ``profile`` with ``seeds`` training seeds, on every core, fresh store."""
    spec = load_experiment("ladder")
    first = spec.seeds[0]  # as ``--seeds`` counts them
    planned = expand(spec, profile=profile, seeds=list(range(first, first + seeds)))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "sweep.db")
        cpu, wall = cpu_seconds(), time.perf_counter()
        run_planned(planned, store, workers=default_workers())
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        store.close()
    return {
        "profile": profile,
        "seeds": seeds,
        "runs": len(planned),
        "wall_s": wall,
        "cpu_s": cpu,
        "cores": cores,
        "core_busy": cpu / (wall * cores),
    }
