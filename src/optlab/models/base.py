"""What every model is: parameters with a leading run axis and a forward over them.

A model never holds its parameters. ``init`` draws one run's parameters from a
generator; the engine stacks R of them on a leading axis, and ``forward`` maps
those stacks and inputs ``x`` of shape (R or 1, B, D) to logits (R or 1, B, C).
R = 1 is the plain case, not a second code path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

Params = dict[str, Tensor]


class Model(Protocol):
    classes: int  # C, the number of logits
    width: int  # the widest activation per point (k centers or H hidden units): sizes eval chunks

    def init(self, generator: torch.Generator) -> Params:
        """One run's parameters, drawn from ``generator``, without the run axis."""
        ...

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Logits (R, B, C) for params stacked over R runs and x of shape (R or 1, B, D)."""
        ...

    def to(self, device: torch.device) -> Model:
        """Move the model's fixed buffers (e.g. the environment's centers)."""
        ...


Scale = Tensor | float | Callable[[], Tensor]  # ∂out/∂w of ``Tape.scaled``, or what gives it


class Tape:
    """Where a forward's trained tensors enter it, for forwards that say so
    (``taped_forward``): the model computes each product and hands it to the tape, which
    returns it. This plain tape does nothing more; the per-sample pass's
    (``engine.grad_moments``) keeps what each product read, to get each coordinate's mean
    and variance over examples from one batched backward."""

    def linear(
        self, name: str, a: Tensor, out: Tensor, rows: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        """``out`` = a @ w for inputs a (R|1, B, in) and the tensor ``name``, w (R, in, out);
        or, with ``rows``, a @ W for W's column j = rows(w_j), each row w_j of w (R, out, D)
        mapped to R^in (a reparametrization row by row, such as c/‖c‖²; ``rows`` maps the
        last axis, over any leading ones)."""
        return out

    def scaled(self, name: str, u: Scale, out: Tensor, index: int | None = None) -> Tensor:
        """``out`` = u ⊙ w + (terms free of w) for the tensor ``name``, w (R, *shape) (or its
        entry ``index`` on the last axis) broadcast against u: ∂out/∂w = u elementwise. u may
        be a function giving it, which only a recording tape calls (a step pays nothing)."""
        return out


PLAIN = Tape()

# an eval product over at most this many inputs runs as outer products (``thin_matmul``)
THIN_INNER = 4


def head(p: Tensor, W: Tensor) -> Tensor:
    """p @ W for a narrow head W (k → C, few classes) on a stack: computed as (Wᵀ pᵀ)ᵀ, the
    same sums in the layout BLAS is fast at: forward and backward 1.2–1.4× faster for
    ``centers`` (k = 2048, C = 2; ``p @ W`` and its gradient ``pᵀ G`` take a slow path).
    At eval Wᵀ is made contiguous first, which BLAS multiplies 3× faster again there; the
    step keeps the strided view, whose rounding its runs were trained with."""
    w_t = W.transpose(-1, -2)
    if not torch.is_grad_enabled():
        w_t = w_t.contiguous()
    return (w_t @ p.transpose(-1, -2)).transpose(-1, -2)


def thin_matmul(x: Tensor, w: Tensor) -> Tensor:
    """x @ w for x (R|1, B, D) and w (R|1, D, k). At eval, for D ≤ ``THIN_INNER``, as the
    sum of D outer products x_{:,i} w_i: BLAS takes a slow path for so thin an inner
    dimension (3× slower at D = 2, k = 2048 here). The step keeps the product, whose
    gradient BLAS sums well and whose rounding its runs were trained with."""
    d = x.shape[-1]
    if torch.is_grad_enabled() or d > THIN_INNER:
        return x @ w
    w = w.contiguous()  # a transposed w strides its rows, and strided rows do not vectorize
    out = x[..., 0:1] * w[..., 0:1, :]
    for i in range(1, d):
        out.addcmul_(x[..., i : i + 1], w[..., i : i + 1, :])
    return out


def torch_linear(
    in_features: int, out_features: int, generator: torch.Generator, bias: bool = False
) -> tuple[Tensor, Tensor | None]:
    """What ``nn.Linear(in_features, out_features, bias)`` draws when it is constructed, in
    its order: the weight by ``kaiming_uniform_(a=√5)``, i.e. U(−1/√in, 1/√in), in its own
    (out, in) shape, then the bias U(−1/√in, 1/√in). The weight comes back transposed to
    (in, out), the layout the models read (x @ W). The same calls as ``nn.Linear``'s: a seeded
    generator gives bitwise its numbers, which ``(2·rand − 1)·bound`` does not (it rounds
    otherwise in about 40% of the entries)."""
    weight = torch.empty(out_features, in_features)
    torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    b = None
    if bias:
        bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
        b = torch.nn.init.uniform_(torch.empty(out_features), -bound, bound, generator=generator)
    return weight.T.contiguous(), b
