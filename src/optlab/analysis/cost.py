"""What an experiment's finished runs took to train. Runs stacked together train on one
clock (the store gives each the stack's wall time), so time is summed over stacks, not runs."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from optlab.store import DONE

# a stack's runs are leased, timed and finished together: they share all three
STACK_KEY = ["started", "finished", "train_seconds"]


@dataclass(frozen=True)
class TrainingTime:
    runs: int  # finished runs (complete or diverged)
    stacks: int  # the stacks they were trained in
    seconds: float  # the stacks' wall times, summed

    def __str__(self) -> str:
        return (
            f"{self.runs} runs trained in {self.stacks} stacks, "
            f"{_duration(self.seconds)} of wall time summed over the stacks"
        )


def _duration(seconds: float) -> str:
    """Seconds, minutes or hours, whichever reads as a number of a few digits."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def training_time(runs: pd.DataFrame) -> TrainingTime:
    """The finished runs of ``runs`` (``Store.runs``), the stacks they shared and the
    stacks' wall time in all: what the experiment cost, counted once per stack."""
    if runs.empty:  # an experiment the store has not planned has no columns either
        return TrainingTime(0, 0, 0.0)
    done = runs[runs["status"].isin(DONE)]
    stacks = done.drop_duplicates(STACK_KEY)
    return TrainingTime(len(done), len(stacks), float(stacks["train_seconds"].sum()))
