"""Each run's batch size: fixed, on a schedule (AdaBatch), or grown by a variance test.

A controller tests, every ``batch_every`` steps, whether the run's minibatch gradient
ḡ = (1/B) Σ_i g_i is precise enough, from the per-example gradients g_i of its own batch
(``engine.per_sample``), and multiplies B by ``batch_factor`` (up to ``batch_max``) for the
steps after a test that fails — the 2025 thesis notepad's "controller which takes in the
batch size … and controls how large the variance is", with the tests it names:

- the norm test (Byrd, Chin, Nocedal and Wu 2012, "Sample size selection in optimization
  methods for machine learning"): grow when Var_B/B > θ²‖ḡ‖², Var_B = Σ_i ‖g_i − ḡ‖²/(B − 1),
  the examples' variance summed over coordinates (tr Σ);
- the inner-product test (Bollapragada, Byrd and Nocedal 2018, "Adaptive sampling strategies
  for stochastic optimization", their θ written ν here): grow when
  Var_B(g_iᵀḡ)/B > ν²‖ḡ‖⁴, Var_B(g_iᵀḡ) = Σ_i (g_iᵀḡ − ‖ḡ‖²)²/(B − 1); it asks only that
  −ḡ be a descent direction often enough, so it grows the batch later than the norm test.

The runs of a stack keep their own sizes: each step's batch is the stack's largest, each
run's a prefix of it, masked (``engine.data.Batches.per_run``, ``engine.losses``). With
``batch_lr = "scale"`` a run's η follows its batch, η_t = η·B_t/B_0, as AdaBatch (Devarakonda
et al. 2017) keeps η/B fixed; with ``hold`` it stays η.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from optlab.config import RunSpec
from optlab.engine.per_sample import per_sample_grads
from optlab.models.base import Model, Params
from optlab.tasks import Task


class Stack(Protocol):
    """What a test reads of the training loop's stack (``engine.train.Stack``), named here
    so that this module need not import the loop that imports it."""

    model: Model
    task: Task

    @property
    def state(self) -> Params: ...


# per-example gradients held at once while a test's sums are taken: R × chunk × d floats
# (16M: 64 MB in float32, beside a float64 copy of a chunk's deviations)
CHECK_ELEMENTS = 2**24


def deviation_sums(G: Tensor, g_bar: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """From per-example gradients G (R, b, d) of some of a batch's examples and the batch's
    mean gradient ḡ (R, d): Σ_i m_i ‖g_i − ḡ‖² and Σ_i m_i (g_iᵀḡ − ‖ḡ‖²)², (R,) each, over
    the examples ``mask`` (R, b) keeps (all where None). Summed chunk by chunk they give the
    two tests' variances without holding every g_i at once."""
    keep = torch.ones(G.shape[:2], dtype=G.dtype, device=G.device) if mask is None else mask
    squared = (G - g_bar[:, None]).pow(2).sum(-1)
    inner = G @ g_bar[..., None]
    along = (inner[..., 0] - g_bar.pow(2).sum(-1)[:, None]).pow(2)
    return (squared * keep).sum(1), (along * keep).sum(1)


def norm_statistic(squared: Tensor, g_bar: Tensor, counts: Tensor) -> Tensor:
    """Var_B/(B·‖ḡ‖²), Var_B = Σ_i ‖g_i − ḡ‖²/(B − 1): the norm test (Byrd et al. 2012) fails
    when it exceeds θ²."""
    return squared / (counts - 1) / counts / g_bar.pow(2).sum(-1)


def inner_product_statistic(along: Tensor, g_bar: Tensor, counts: Tensor) -> Tensor:
    """Var_B(g_iᵀḡ)/(B·‖ḡ‖⁴), Var_B(g_iᵀḡ) = Σ_i (g_iᵀḡ − ‖ḡ‖²)²/(B − 1): the inner-product
    test (Bollapragada et al. 2018) fails when it exceeds ν²."""
    return along / (counts - 1) / counts / g_bar.pow(2).sum(-1).pow(2)


class BatchControl:
    """The batch sizes of a stack's runs over training: each run's size for the next step,
    the examples it has seen, and the controller's tests where one is set."""

    def __init__(self, specs: Sequence[RunSpec], n_train: int, device: torch.device) -> None:
        t = specs[0].train
        self.kind, self.factor = t.batch_controller, t.batch_factor
        self.every = t.batch_every or t.eval_every
        self.cap = min(t.batch_max or n_train, n_train)
        self.scale_lr = t.batch_lr == "scale"
        self.schedule = t.batch_sizes if self.kind == "none" else None
        threshold = [s.train.batch_theta or s.train.batch_nu or 0.0 for s in specs]
        self.threshold = torch.tensor(threshold, dtype=torch.float64, device=device)
        self.start = t.batch_size  # B_0, against which η follows the batch
        self.sizes = [t.batch_size] * len(specs)  # B for the next step
        self.used = list(self.sizes)  # B in the latest step (the first's before any)
        self.samples = [0] * len(specs)  # examples seen so far, Σ_t B_t
        self.tests: list[tuple[int, list[float]]] = []  # (step, statistic per run), not yet stored
        # whether a run's batch can change over training (a schedule or a controller)
        self.varies = self.schedule is None or len(set(self.schedule)) > 1

    def at(self, t: int) -> list[int]:
        """Each run's batch size at step t (from 0), counted into the samples it has seen."""
        if self.schedule is not None:
            self.sizes = [self.schedule[t]] * len(self.sizes)
        self.used = list(self.sizes)
        self.samples = [s + b for s, b in zip(self.samples, self.sizes, strict=True)]
        return self.sizes

    def due(self, step: int, steps: int) -> bool:
        """Whether the controller tests after step ``step`` (from 1): every ``every`` steps,
        except the last, after which no batch is drawn."""
        return self.kind != "none" and step % self.every == 0 and step < steps

    def check(
        self,
        step: int,
        stack: Stack,
        x: Tensor,
        y: Tensor,
        mask: Tensor | None,
        grads: Sequence[Tensor],
    ) -> list[float] | None:
        """Test each run after step ``step`` on the batch (x, y, mask) its gradients ``grads``
        (of the stack's parameters, each run's the mean over its own batch) were taken on, at
        the same weights; grow the runs whose test fails. Returns each run's η factor B/B_0
        where a batch changed and η follows it, else None."""
        runs = len(self.sizes)
        g_bar = torch.cat([g.detach().reshape(runs, -1) for g in grads], -1).double()
        counts = torch.tensor(self.sizes, dtype=torch.float64, device=g_bar.device)
        squared, along = _sums(stack, x, y, mask, g_bar)
        if self.kind == "norm_test":
            statistic = norm_statistic(squared, g_bar, counts)
        else:
            statistic = inner_product_statistic(along, g_bar, counts)
        fails = (statistic > self.threshold.pow(2)).tolist()
        self.tests.append((step, statistic.tolist()))
        before = list(self.sizes)
        self.sizes = [
            min(b * self.factor, self.cap) if fail else b
            for b, fail in zip(self.sizes, fails, strict=True)
        ]
        if self.sizes == before or not self.scale_lr:
            return None
        return [b / self.start for b in self.sizes]

    def rows(self, run_ids: Sequence[str], step: int) -> list:
        """Store rows at ``step``: each run's ``batch_size`` (of the steps after it) and
        ``samples`` (seen up to it), and the ``statistic`` of each test taken since the last
        rows, at its own step."""
        sizes = self.sizes
        if self.schedule is not None:
            sizes = [self.schedule[min(step, len(self.schedule) - 1)]] * len(sizes)
        values = {"batch_size": sizes, "samples": self.samples}
        rows = [
            (run_id, "batch", name, step, float(per_run[i]))
            for name, per_run in values.items()
            for i, run_id in enumerate(run_ids)
        ]
        rows += [
            (run_id, "batch", "statistic", at, value)
            for at, per_run in self.tests
            for run_id, value in zip(run_ids, per_run, strict=True)
        ]
        self.tests = []
        return rows


def _sums(
    stack: Stack, x: Tensor, y: Tensor, mask: Tensor | None, g_bar: Tensor
) -> tuple[Tensor, Tensor]:
    """``deviation_sums`` over a whole batch, its per-example gradients taken a chunk at a
    time (``CHECK_ELEMENTS``)."""
    runs, d = g_bar.shape
    chunk = max(1, CHECK_ELEMENTS // (runs * d))
    squared = g_bar.new_zeros(runs)
    along = g_bar.new_zeros(runs)
    for lo in range(0, x.shape[1], chunk):
        part: Params = per_sample_grads(
            stack.model,
            stack.state,
            x[:, lo : lo + chunk],
            y[:, lo : lo + chunk],
            stack.task.loss,
            chunk,
        )
        G = torch.cat([g.reshape(runs, g.shape[1], -1) for g in part.values()], -1).double()
        m = None if mask is None else mask[:, lo : lo + chunk].double()
        s, a = deviation_sums(G, g_bar, m)
        squared += s
        along += a
    return squared, along
