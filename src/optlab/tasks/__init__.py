"""Tasks by name: data, splits and loss (``optlab.tasks.base.Task``), built from a task spec."""

from __future__ import annotations

from collections.abc import Callable

from optlab.tasks.base import Task, extra_metrics
from optlab.tasks.voronoi import RULES, SPLITS, Environment, make_environment


def _voronoi(spec, n_train: int) -> Task:
    return make_environment(
        spec.dim, spec.classes, n_train, spec.n_eval, spec.n_test, spec.seed, spec.rule
    )


def _mg_toy(spec, n_train: int) -> Task:
    from optlab.tasks.mg_toy import make_mg_toy

    return make_mg_toy(spec.samples)


def _digits(spec, n_train: int) -> Task:
    from optlab.tasks.digits import make_digits

    return make_digits(spec.seed, spec.eval_fraction, spec.test_fraction)


def _charlm(spec, n_train: int) -> Task:
    from optlab.tasks.charlm import make_charlm

    return make_charlm(
        block_size=spec.block_size,
        eval_chars=spec.eval_chars,
        test_chars=spec.test_chars,
        expected_sha256=spec.sha256,
        allow_other_text=spec.allow_other_text,
    )


# name -> builder(task spec, training points drawn); data is built when first asked for
TASKS: dict[str, Callable[..., Task]] = {
    "voronoi": _voronoi,
    "mg_toy": _mg_toy,
    "digits": _digits,
    "charlm": _charlm,
}


def build_task(spec, n_train: int) -> Task:
    """The task a task spec (``optlab.config``) names; ``n_train`` sizes a streaming task."""
    return TASKS[spec.name](spec, n_train)


__all__ = [
    "RULES",
    "SPLITS",
    "TASKS",
    "Environment",
    "Task",
    "build_task",
    "extra_metrics",
    "make_environment",
]
