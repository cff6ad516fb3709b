"""The engine's side of the probes: what to keep between steps, and values into store rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from optlab.probes import PROBES
from optlab.probes.base import Evaluation, Observation, Params, Update
from optlab.probes.optimizer import make_update, split_update
from optlab.store.sqlite import ArrayRow, MetricRow


class Recorder:
    """Runs a spec's probes (``optlab.config.ProbeSpec``) at every recorded step of a group:
    step 0, each eval step and the end. Array probes run every ``array_every``-th eval step
    and at both ends; grad-cadence probes (grad_stats) at step 0, every ``grad_every`` steps
    (the eval cadence if unset) and at the last step, eval step or not."""

    def __init__(
        self,
        spec,
        run_ids: Sequence[str],
        params: Params,
        optimizer,
        eval_every: int,
        steps: int,
        batch_of: Callable[[int], Sequence[int]],
        scale_invariant: tuple[str, ...] = (),
        task: dict[str, Tensor] | None = None,
        scalars_of=None,
        gauss_newton=None,
        per_sample=None,
    ) -> None:
        """``batch_of(step)``: each run's training batch B in the step that led to ``step``
        (step 1's at step 0), a schedule's or a batch controller's;
        ``scalars_of``: the model's own named scalars of its parameters, if it has any;
        ``gauss_newton``, ``per_sample``: the engine's Gauss-Newton pass and per-example
        gradients on fixed batches (``Observation``)."""
        self.probes = [PROBES[name] for name in spec.record]
        needs = frozenset().union(*(p.needs for p in self.probes))
        self.run_ids = list(run_ids)
        self.optimizer = optimizer
        self.eval_every, self.array_every = eval_every, spec.array_every
        self.grad_every = spec.grad_every or eval_every
        self.has_grad_probes = any(p.grad_cadence for p in self.probes)
        self.steps, self.batch_of = steps, batch_of
        self._per_sample: Params | None = None  # captured before a grad step's update
        self.scale_invariant, self.task = scale_invariant, task or {}
        self.scalars_of = scalars_of if "scalars" in spec.record else None
        self.gauss_newton, self.per_sample = gauss_newton, per_sample
        self.init = {k: p.detach().clone() for k, p in params.items()} if "init" in needs else None
        self.wants_update = "update" in needs
        self.wants_predictions = "predictions" in needs
        self._before: tuple[Params, Params | None, list[Tensor]] | None = None
        self.update: Update | None = None

    def arrays_due(self, step: int, final: bool = False) -> bool:
        return final or (step // self.eval_every) % self.array_every == 0

    def grad_due(self, step: int) -> bool:
        """Whether the grad-cadence probes record at ``step``."""
        last = step == self.steps
        return self.has_grad_probes and (step % self.grad_every == 0 or last)

    def before_step(self, step: int, params: Params, grads: list[Tensor]) -> None:
        """Call before step ``step`` (from 1) if its result will be recorded (only if
        ``wants_update``); at a grad step, the per-example gradients at these weights too."""
        self._before = (*split_update(self.optimizer, params, grads), grads)
        if self.per_sample is not None and self.grad_due(step):
            self._per_sample = self.per_sample()

    def after_step(self, params: Params) -> None:
        before, adaptive, grads = self._before
        self.update, self._before = make_update(before, adaptive, params, grads), None

    @torch.no_grad()
    def record(
        self, step: int, params: Params, evaluation: Evaluation | None, final: bool = False
    ) -> tuple[list[MetricRow], list[ArrayRow]]:
        """The probes due at ``step``: metric rows (one host transfer) and array rows. Without
        an ``evaluation`` (a step off the eval cadence) the grad-cadence probes alone."""
        captured, self._per_sample = self._per_sample, None
        per_sample = self.per_sample  # at step 0 (no step taken): at θ_0, on call
        if captured is not None:
            per_sample = lambda: captured  # noqa: E731 - the weights the step read
        obs = Observation(
            step=step,
            params=params,
            evaluation=evaluation,
            init=self.init,
            update=self.update,
            optimizer=self.optimizer,
            scale_invariant=self.scale_invariant,
            task=self.task,
            model_scalars=self.scalars_of(params) if self.scalars_of else {},
            gauss_newton=self.gauss_newton,
            per_sample=per_sample,
            batch=self._batch(step, params),
        )
        keys, values, arrays = [], [], []
        for probe in self.probes:
            if not (self.grad_due(step) if probe.grad_cadence else evaluation is not None):
                continue
            if probe.arrays:
                if self.arrays_due(step, final):
                    arrays += self._array_rows(step, probe.measure(obs))
                continue
            for name, value in probe.measure(obs).items():
                keys.append((probe.split, name))
                values.append(value.float())
        rows: list[MetricRow] = []
        if values:
            table = torch.stack(values).cpu().tolist()  # (metrics, R)
            rows = [
                (run_id, split, name, step, value)
                for (split, name), per_run in zip(keys, table, strict=True)
                for run_id, value in zip(self.run_ids, per_run, strict=True)
            ]
        return rows, arrays

    def _batch(self, step: int, params: Params) -> Tensor:
        """(R,) each run's batch B in the step that led to ``step`` (step 1's at step 0)."""
        device = next(iter(params.values())).device if params else "cpu"
        sizes = [float(b) for b in self.batch_of(step)]
        return torch.tensor(sizes, device=device)

    def _array_rows(self, step: int, named: dict[str, Tensor]) -> list[ArrayRow]:
        out = []
        for name, stack in named.items():
            host = stack.cpu().numpy()
            out += [(run_id, name, step, host[i]) for i, run_id in enumerate(self.run_ids)]
        return out
