"""From planned runs to trained ones: skip what the store has done, group the rest, train.

Runs whose computation has the same shape (they differ only in the training seed and
numeric optimizer hyperparameters) form one group and train as one stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from optlab.config import PlannedRun, RunSpec
from optlab.engine.train import Outcome, train_group
from optlab.optim import OPTIMIZERS
from optlab.store import DONE, Store

PER_RUN_NUMBERS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "momentum",
    "alpha",
    "decay_beta",
    "decay_strength",
    "decay_p",
)


def group_key(spec: RunSpec) -> str:
    """Runs with equal keys can train as one stack."""
    tree = spec.model_dump(mode="json")
    if spec.optimizer.name not in OPTIMIZERS:
        return spec.run_id  # an arbitrary torch.optim.Optimizer trains one run at a time
    del tree["train"]["seed"]
    for key in PER_RUN_NUMBERS:
        del tree["optimizer"][key]
    return json.dumps(tree, sort_keys=True)


def group_runs(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(group_key(spec), []).append(spec)
    return list(groups.values())


def pending(planned: Sequence[PlannedRun], store: Store) -> list[RunSpec]:
    """Each distinct run of ``planned`` that the store has not finished, once."""
    status = store.statuses([p.run_id for p in planned])
    todo = {p.run_id: p.spec for p in planned if status.get(p.run_id) not in DONE}
    return list(todo.values())


def run_planned(
    planned: Sequence[PlannedRun],
    store: Store,
    on_steps: Callable[[int], None] = lambda n: None,
) -> list[Outcome]:
    """Record the plan, then train every pending group; returns what was trained now."""
    store.plan(planned)
    outcomes: list[Outcome] = []
    for group in group_runs(pending(planned, store)):
        outcomes += train_group(group, store, on_steps)
    return outcomes
