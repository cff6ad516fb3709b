"""Grouping, the stacked training loop, and device handling."""

from optlab.engine.sweep import group_runs, pending, run_planned
from optlab.engine.train import Outcome, evaluate, train_group

__all__ = ["Outcome", "evaluate", "group_runs", "pending", "run_planned", "train_group"]
