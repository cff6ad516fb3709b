"""Each run's per-example gradients over a stack, by ``torch.func``.

The gradient of one example's loss, for every example of a batch and every run of a
stack: ``vmap`` over runs of ``vmap`` over examples of ``grad``, where each call is the
model's own forward (its ``per_example_forward`` where it has one: the same function in a
form cheaper per example) on a stack of one run and a batch of one example. The batch goes
through in chunks, so that memory holds at most R × chunk gradients of the model at once
beside the result. What per-sample statistics (gradient noise, Adam's moments against
the batch's) are computed from.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from optlab.engine.losses import run_losses
from optlab.models.base import Model, Params


def check_per_sample(model: Model, needs: str = "per_sample_grads") -> None:
    """A BatchNorm mixes the examples of a batch (the forward trains it on the batch's
    statistics), so one example's gradient is not defined: refuse such a model, naming the
    setting that ``needs`` them (e.g. ``probes.record: grad_stats``)."""
    base = getattr(model, "base", None)
    if isinstance(base, nn.Module) and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in base.modules()
    ):
        raise ValueError(
            f"{needs} needs per-example gradients, which a BatchNorm does not define (it "
            "normalizes by the batch's statistics); use normalization 'none' or 'layernorm'"
        )


def per_sample_grads(
    model: Model,
    state: Params,
    x: Tensor,
    y: Tensor,
    loss: str = "cross_entropy",
    chunk: int = 256,
) -> dict[str, Tensor]:
    """Per-example gradients {name: (R, B, *shape)} of each run's loss on each example.

    ``state``: the stack's parameters and buffers (R, ...), as the model's forward takes
    them; the entries that require grad are differentiated, the rest held fixed. ``x`` and
    ``y``: (R or 1, B, ...), a shared batch when the run axis is 1. ``loss``: as
    ``run_losses`` (cross-entropy of class indices, or ``half_mse``, ½·(f − y)²). Examples
    go ``chunk`` at a time."""
    check_per_sample(model)
    if chunk < 1:
        raise ValueError(f"chunk: {chunk} is not allowed; need 1 or more examples")
    params = {k: v.detach() for k, v in state.items() if v.requires_grad}
    fixed = {k: v.detach() for k, v in state.items() if not v.requires_grad}

    forward = getattr(model, "per_example_forward", model.forward)  # a form cheaper per example

    def example_loss(p: Params, rest: Params, xi: Tensor, yi: Tensor) -> Tensor:
        one = {k: v[None] for k, v in {**p, **rest}.items()}
        return run_losses(forward(one, xi[None, None]), yi[None, None], 1, loss)[0]

    over_batch = vmap(grad(example_loss), in_dims=(None, None, 0, 0), randomness="different")
    dims = (None if x.shape[0] == 1 else 0, None if y.shape[0] == 1 else 0)
    over_runs = vmap(over_batch, in_dims=(0, 0, *dims), randomness="different")

    def runs_of(t: Tensor, lo: int) -> Tensor:
        part = t[:, lo : lo + chunk]
        return part[0] if t.shape[0] == 1 else part

    with torch.enable_grad():
        parts = [
            over_runs(params, fixed, runs_of(x, lo), runs_of(y, lo))
            for lo in range(0, x.shape[1], chunk)
        ]
    if len(parts) == 1:  # one chunk: no copy
        return parts[0]
    return {k: torch.cat([part[k] for part in parts], dim=1) for k in params}
