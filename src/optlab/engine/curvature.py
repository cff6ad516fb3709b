"""What a K-FAC step needs beside the gradients (``optlab.optim.kfac``): each Linear layer's
inputs a and the per-example gradients g of the curvature's losses w.r.t. its outputs.

One forward under ``linear_tape`` records every hand-stacked Linear's input and output;
the training loss's backward gives the gradients, and one more backward per row of
``curvature_losses`` (one for fisher and empirical, one per output for gauss_newton) gives
g at every layer at once, w.r.t. the recorded outputs. The Fisher's labels are drawn from
each run's own generator, seeded by its training seed, so a run samples what it would
sample alone.

The same pass, with the gauss_newton curvature and the inputs' gradients too, is what the
``jacobian`` probe measures on a fixed eval batch (``gauss_newton_pass``), for any optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.engine.losses import run_losses
from optlab.engine.precision import model_outputs
from optlab.models.stacked import linear_tape
from optlab.optim.kfac import curvature_losses
from optlab.probes.base import Jacobians

FISHER_SALT = 0x4B464143  # "KFAC": a run's label draws apart from its data and init streams
PROBE_POINTS = 256  # the eval points a Gauss-Newton pass for the probes takes (the first ones)

Layers = dict[str, tuple[Tensor, Tensor]]  # prefix -> (a (R, N, in), g (R, K·N, out))


class CurvatureStep:
    """Loss, gradients and per-layer statistics of one step of a stack trained by K-FAC."""

    def __init__(self, curvature: str, seeds: Sequence[int]) -> None:
        self.curvature = curvature
        self.generators = [torch.Generator().manual_seed(s ^ FISHER_SALT) for s in seeds]

    def __call__(self, stack, x: Tensor, y: Tensor) -> tuple[Tensor, list[Tensor], Layers]:
        """(R,) losses, the gradients of their sum, and each Linear layer's (a, g)."""
        params, runs = list(stack.params.values()), len(self.generators)
        with linear_tape() as tape:
            outputs = model_outputs(stack.model, stack.state, x, stack.precision)
        if not tape:
            raise ValueError(
                "optimizer.name: kfac needs an nn.Sequential of Linear layers on optlab's "
                "stacked path, and this model has none"
            )
        loss = run_losses(outputs, y, runs, stack.task.loss)
        grads = list(torch.autograd.grad(loss.sum(), params, retain_graph=True))
        rows = curvature_losses(
            outputs.expand(runs, *outputs.shape[1:]).reshape(runs, -1, outputs.shape[-1]),
            self.curvature,
            stack.task.loss,
            targets=y.expand(runs, *y.shape[1:]).reshape(runs, -1),
            generators=self.generators,
        )
        layer_outputs = [out for _, _, out in tape]
        passes = [
            torch.autograd.grad(row.sum(), layer_outputs, retain_graph=k + 1 < len(rows))
            for k, row in enumerate(rows)
        ]
        # with bf16 the taped inputs and output gradients are bfloat16: the statistics in the
        # parameters' dtype, as the optimizer's state
        layers = _layer_statistics(tape, passes, runs)
        dtype = params[0].dtype
        return loss, grads, {k: (a.to(dtype), g.to(dtype)) for k, (a, g) in layers.items()}


def gauss_newton_pass(stack, x: Tensor) -> Jacobians | None:
    """The ``jacobian`` probe's measurements at the stack's current weights, on inputs x
    (N, ...) every run shares, from one taped forward and one backward per output: row k of
    ``curvature_losses``' gauss_newton rows is √C Σ_n f_{n,k}, whose gradient gives g at every
    Linear layer and, w.r.t. x, √C J_k(x_n) per example (J_k the k-th row of ∂f/∂x). Each
    layer's (a, g), E_x ‖J(x)‖²_F and E_x tr(J(x) Σ J(x)ᵀ), Σ = E[x xᵀ] over the batch, as
    (1/N²) Σ_{n,m} ‖J(x_n) x_m‖², without forming Σ. None for inputs that are not real numbers
    (tokens) and for a model without parameters.

    The weights are detached and the buffers copied, so nothing of training is touched: a
    BatchNorm normalizes by the batch's statistics and leaves its running ones as they were.
    """
    if not x.is_floating_point() or not stack.params:
        return None
    runs, n = len(next(iter(stack.params.values()))), len(x)
    state = {k: p.detach() for k, p in stack.params.items()}
    state |= {k: b.clone() for k, b in stack.buffers.items()}
    with torch.enable_grad():
        x = x.expand(runs, *x.shape).clone().requires_grad_()  # per run: each its own ∂f/∂x
        with linear_tape() as tape:
            outputs = stack.model.forward(state, x)
        rows = curvature_losses(outputs.reshape(runs, -1, outputs.shape[-1]), "gauss_newton")
        wrt = [x, *(out for _, _, out in tape)]
        passes = [
            torch.autograd.grad(row.sum(), wrt, retain_graph=k + 1 < len(rows))
            for k, row in enumerate(rows)
        ]
    inputs = x.detach()[0].reshape(n, -1)
    rows_x = [p[0].reshape(runs, n, -1) for p in passes]  # √C J_k(x_n), (R, N, d) each
    scale = len(rows) * n
    jacobian_sq = sum(r.pow(2).sum((1, 2)) for r in rows_x) / scale
    whitened = sum((r @ inputs.T).pow(2).sum((1, 2)) for r in rows_x) / (scale * n)
    layers = _layer_statistics(tape, [p[1:] for p in passes], runs)
    return Jacobians(layers, jacobian_sq, whitened)


def _layer_statistics(tape: list, passes: list, runs: int) -> Layers:
    """Each taped Linear's inputs a (R, N, in) and its output gradients from every backward
    pass, stacked along the example axis (R, K·N, out), by the layer's prefix."""
    layers = {}
    for i, (prefix, a, out) in enumerate(tape):
        a = a.detach().expand(runs, *a.shape[1:]).reshape(runs, -1, a.shape[-1])
        g = torch.cat([p[i].reshape(runs, -1, out.shape[-1]) for p in passes], dim=1)
        layers[prefix] = (a, g)
    return layers
