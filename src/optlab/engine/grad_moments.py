"""Each coordinate's mean and variance over examples of their gradients: from the gradients
themselves, or from one batched backward pass without them.

The grad_stats probe needs, per parameter coordinate i, the examples' mean gradient ḡ_i and
unbiased variance Σ_ii over N examples (``Spread``). ``torch.func`` gives any model's
per-example gradients (``optlab.engine.per_sample``), N copies of the model: for the final
model at H = 512 that is 0.5 GB, most of a probe's time. A model that writes where its
parameters enter (``models.base.Tape``) gets the two sums without them, as BackPACK does
(Dangel et al. 2020, "BackPACK: packing more into backprop"): a weight W read as a @ W has
per-example gradients g_b = a_bᵀ δ_b (δ_b = ∂ℓ_b/∂(a_b W)), so that

    Σ_b g_b = aᵀ δ  and  Σ_b g_b ⊙ g_b = (a ⊙ a)ᵀ (δ ⊙ δ),

two products the size of the weight, in float64; a weight reparametrized row by row before
its product (the ladder's centers, read as c/‖c‖²) pulls both back through each row's
Jacobian; a weight read elementwise (u ⊙ w, a layernorm's) has g_b = u_b ⊙ δ_b, small enough
to keep. One forward and one backward of the N examples at once, the δ of every product
from the same backward: on the final model at H = 512, 35 ms against 0.8 s (measured).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from optlab.engine.losses import run_losses
from optlab.engine.per_sample import per_sample_grads
from optlab.models.base import Model, Params, Scale, Tape
from optlab.probes.gradient_stats import Spread


class RecordingTape(Tape):
    """The products a taped forward computes, each kept with what it read, for one
    backward pass to give each its δ (``taped_spreads``)."""

    def __init__(self) -> None:
        self.linears: dict[str, tuple[Tensor, Tensor, Callable | None]] = {}  # a, out, rows
        self.scales: dict[tuple[str, int | None], tuple[Tensor | float, Tensor]] = {}  # u, out

    def _claim(self, name: str, index: int | None) -> None:
        """Each tensor enters once (each of its entries once, where entered by entry)."""
        taken = {(n, None) for n in self.linears} | set(self.scales)
        names = {n for n, _ in taken}
        if (name, index) in taken or (name, None) in taken or (index is None and name in names):
            raise ValueError(f"taped forward: {name!r} enters twice; the tape needs one use")

    def linear(
        self, name: str, a: Tensor, out: Tensor, rows: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        if a.dim() != 3:  # a sequence's example sums its positions' outer products
            raise ValueError(f"taped forward: {name!r} reads {a.dim()}-d inputs, not (R, N, in)")
        self._claim(name, None)
        self.linears[name] = (a.detach(), out, rows)
        return out

    def scaled(self, name: str, u: Scale, out: Tensor, index: int | None = None) -> Tensor:
        self._claim(name, index)
        u = u() if callable(u) else u
        self.scales[(name, index)] = (u.detach() if isinstance(u, Tensor) else u, out)
        return out


def taped_spreads(model: Model, state: Params, x: Tensor, y: Tensor, loss: str) -> dict:
    """Each trained tensor's ``Spread`` over the examples of (x, y) (R or 1, N, ...), from
    one batched backward through ``model.taped_forward``; {name: Spread}."""
    tape = RecordingTape()
    params = {k: v.detach().requires_grad_(v.requires_grad) for k, v in state.items()}
    runs, n = next(iter(params.values())).shape[0], x.shape[1]
    with torch.enable_grad():
        logits = model.taped_forward(params, x, tape)
        examples_loss = run_losses(logits, y, runs, loss).sum() * n  # each example's own
        outs = [v[1] for v in (*tape.linears.values(), *tape.scales.values())]
        deltas = torch.autograd.grad(examples_loss, outs)
    delta_of = dict(zip([*tape.linears, *tape.scales], deltas, strict=True))
    trained = sorted(k for k, v in state.items() if v.requires_grad)
    if sorted({*tape.linears, *(name for name, _ in tape.scales)}) != trained:
        raise ValueError(f"taped forward: taped {sorted(delta_of)}, trained {trained}")
    spreads = {
        name: _linear_spread(a, delta_of[name], rows, state[name])
        for name, (a, _, rows) in tape.linears.items()
    }
    spreads |= _scaled_spreads(tape.scales, delta_of, state)
    return {k: spreads[k] for k in trained}


def _linear_spread(a: Tensor, delta: Tensor, rows: Callable | None, w: Tensor) -> Spread:
    """A product a @ w's (or with ``rows``, a @ W with W's column j = rows(w_j)) spread from
    its inputs a (R|1, N, in) and its δ (R, N, out), in float64."""
    runs, n = delta.shape[:2]
    a, d = a.double().expand(runs, *a.shape[1:]), delta.double()
    total = _over_examples(a, d)  # Σ_b a_bᵀ δ_b, (R, in, out)
    if rows is None:
        return Spread.of_sums(total, _over_examples(a.pow(2), d.pow(2)), n)
    # g_bj = J_jᵀ a_b δ_bj with J_j = ∂rows/∂w_j, so Σ_b g_bj = J_jᵀ Σ_b a_b δ_bj and
    # Σ_b g_bj² = diag(J_jᵀ M_j J_j) with M_j = Σ_b δ_bj² a_b a_bᵀ (in × in)
    jac = _row_jacobians(rows, w.detach().double())
    outer = (a[..., :, None] * a[..., None, :]).reshape(runs, n, -1)
    M = _over_examples(outer, d.pow(2)).reshape(runs, a.shape[-1], a.shape[-1], -1)
    sums = torch.einsum("rjbk,rbj->rjk", jac, total)
    return Spread.of_sums(sums, torch.einsum("rjbk,rjck,rbcj->rjk", jac, jac, M), n)


def _row_jacobians(rows: Callable[[Tensor], Tensor], w: Tensor) -> Tensor:
    """J_j = ∂rows(w_j)/∂w_j for every row of w (R, out, D), (R, out, in, D): one
    forward-mode pass per input coordinate over all rows at once (``rows`` maps the last
    axis, as its ``Tape.linear`` documents); 1.7× faster than a vmapped jacrev here."""
    basis = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    columns = [torch.func.jvp(rows, (w,), (e.expand_as(w),))[1] for e in basis]
    return torch.stack(columns, dim=-1)


def _over_examples(a: Tensor, d: Tensor) -> Tensor:
    """Σ_b a_bᵀ d_b, (R, in, out) for a (R, N, in) and d (R, N, out): the narrower side as
    the product's rows, the layout BLAS is fast at (10× for 2 against 2,048 here)."""
    if a.shape[-1] <= d.shape[-1]:
        return a.transpose(1, 2) @ d
    return (d.transpose(1, 2) @ a).transpose(1, 2)


def _scaled_spreads(scales: dict, delta_of: dict, state: Params) -> dict[str, Spread]:
    """The spreads of tensors read elementwise: g_b = u_b ⊙ δ_b, summed over the axes w was
    broadcast along, kept per example (w is small); a tensor entered entry by entry is its
    entries' gradients stacked on its last axis."""
    entries: dict[str, dict[int | None, Tensor]] = {}
    for (name, index), (u, _) in scales.items():
        delta = delta_of[(name, index)]  # (R, N, ..., *shape)
        kept = state[name].dim() - 1 - (index is not None)
        axes = tuple(range(2, delta.dim() - kept))
        if isinstance(u, Tensor):
            g = u * delta
            entries.setdefault(name, {})[index] = g.sum(axes) if axes else g
        else:  # a number (an offset's −1): the sum first, one pass instead of two
            entries.setdefault(name, {})[index] = u * (delta.sum(axes) if axes else delta)
    spreads = {}
    for name, parts in entries.items():
        if None in parts:
            spreads[name] = Spread.of(parts[None])
            continue
        if sorted(parts) != list(range(state[name].shape[-1])):
            raise ValueError(f"taped forward: {name!r} entered at {sorted(parts)} only")
        spreads[name] = Spread.of(torch.stack([parts[i] for i in sorted(parts)], dim=-1))
    return spreads


def example_spreads(model: Model, state: Params, x: Tensor, y: Tensor, loss: str) -> dict:
    """{name: Spread} of each trained tensor over the examples of (x, y): by the model's
    taped forward where it has one, a few runs at a time (about ``PROBE_CHUNK_ELEMENTS``
    activations), else from its per-example gradients (``torch.func``)."""
    if not hasattr(model, "taped_forward"):
        return {k: Spread.of(g) for k, g in per_sample_grads(model, state, x, y, loss).items()}
    runs = next(iter(state.values())).shape[0]
    per = max(1, PROBE_CHUNK_ELEMENTS // (x.shape[1] * model.width))
    parts = []
    for lo in range(0, runs, per):
        part = {k: v[lo : lo + per] for k, v in state.items()}
        xs, ys = (t if t.shape[0] == 1 else t[lo : lo + per] for t in (x, y))
        parts.append(taped_spreads(model, part, xs, ys, loss))
    if len(parts) == 1:
        return parts[0]
    return {k: Spread.stack([p[k] for p in parts]) for k in parts[0]}


# activations per slice of runs in the taped pass: a stack of 64 centers runs at 2,048
# centers would hold 0.3 GB per float64 δ at once; at this size a slice is a few MB
PROBE_CHUNK_ELEMENTS = 2**20


PROBE_EXAMPLES = 256  # the training examples the grad_stats probe takes (the first ones)


def probe_spreads(stack, x: Tensor, y: Tensor) -> dict:
    """{name: Spread} over the fixed batch (x, y) (1, N, ...) at the stack's current weights,
    for the ``grad_stats`` probe."""
    return example_spreads(stack.model, stack.state, x, y, stack.task.loss)
