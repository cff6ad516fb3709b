"""The paper's modeling ladder (Yu 2022 §3.1, the AdamWAnalysis README "Modeling"): each rung learns one more piece.

Notation: for the environment's centers c_j, ĉ_j = c_j/‖c_j‖² and d_j = x·ĉ_j; the
center probabilities p come from a softmax over centers; logits = pW with W a
k×C linear layer without bias (PyTorch's default init). Parameters carry a
leading run axis R (see ``optlab.models.base``).

Each rung draws its initial parameters as the original modules did when constructed after
``torch.manual_seed(seed)``: the same distributions, shapes and order of draws, so that a
run with training seed s starts where the original's run with seed s started (plus_minus at
seed 42: offset 0.8823). Tensors made of constants (the scale, the plus-minus pair) draw
nothing; the order is written at each ``init``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from optlab.models.base import PLAIN, Params, Tape, head, thin_matmul, torch_linear
from optlab.stacking import per_run

SHARP = 10_000.0  # the fixed softmax sharpness of the rungs that do not learn a scale


def inverse_point(c: Tensor) -> Tensor:
    """ĉ = c/‖c‖², over the last axis: one center (D,), or k of them (..., k, D)."""
    return c / c.pow(2).sum(-1, keepdim=True)


def dot_over_norm(x: Tensor, centers: Tensor) -> Tensor:
    """d_j = x·c_j/‖c_j‖² for x (R|1, B, D) and centers (k, D) or (R, k, D): (R|1, B, k)."""
    return thin_matmul(x, inverse_point(centers).transpose(-1, -2))


def minus_offset(d: Tensor, offset: Tensor, tape: Tape = PLAIN) -> Tensor:
    """d − o for each run's offset o (R,), written d + (−o): the same numbers, and autograd
    then negates the offset's summed gradient (R,) instead of the whole (R, B, k) gradient.
    At eval a stack's own d (R, B, k) takes the sum in place."""
    if torch.is_grad_enabled() or d.shape[0] != offset.shape[0]:
        return tape.scaled("offset", -1.0, d + per_run(-offset, 3))
    return d.add_(per_run(-offset, 3))


class _FixedCenters:
    """Rungs that read the environment's centers (and, for ``exact``, their labels)."""

    def __init__(self, centers: Tensor, center_labels: Tensor, classes: int) -> None:
        self.centers = centers
        self.center_labels = center_labels
        self.classes = classes

    @property
    def k(self) -> int:
        return self.centers.shape[0]

    @property
    def width(self) -> int:
        return self.k

    def to(self, device: torch.device) -> _FixedCenters:
        self.centers = self.centers.to(device)
        self.center_labels = self.center_labels.to(device)
        return self

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """The rung's ``taped_forward`` (each trained tensor entering through a tape, for
        ``optlab.engine.grad_moments``) with the plain tape."""
        return self.taped_forward(params, x, PLAIN)

    def head(self, generator: torch.Generator) -> Tensor:
        """W (k, C): nn.Linear(k, C, bias=False)'s weight, drawn (C, k) and transposed."""
        return torch_linear(self.k, self.classes, generator)[0]


class Exact(_FixedCenters):
    """class = label of argmin_j (d_j − 1)²; logits one-hot 1/0. Nothing trains.

    At 100% accuracy its cross-entropy is ln(1 + e⁻¹) ≈ 0.3133 for C = 2: the floor of
    cross-entropy on 0/1 logits, which the paper notes.
    """

    def init(self, generator: torch.Generator) -> Params:
        return {}

    def forward(self, params: Params, x: Tensor) -> Tensor:
        nearest = (dot_over_norm(x, self.centers) - 1).pow(2).argmin(-1)
        return F.one_hot(self.center_labels[nearest], self.classes).to(x.dtype)


class CenterLabels(_FixedCenters):
    """p = softmax(−10000·(|d − 1| − min_j |d_j − 1|)); logits = pW: learns only which center is which class."""

    def init(self, generator: torch.Generator) -> Params:
        """One draw, the head W."""
        return {"W": self.head(generator)}

    def taped_forward(self, params: Params, x: Tensor, tape: Tape) -> Tensor:
        dist = (dot_over_norm(x, self.centers) - 1).abs()
        p = torch.softmax(-SHARP * (dist - dist.amin(-1, keepdim=True)), dim=-1)
        return tape.linear("W", p, head(p, params["W"]))


class LearnOffset(_FixedCenters):
    """p = softmax(−10000·|d − o|), offset o ~ U(0, 1): learns that d = 1 marks a center's cell."""

    def init(self, generator: torch.Generator) -> Params:
        """The offset first (rand of shape (1,), kept as a scalar), then the head W: the
        original module's order, and that of every rung below that keeps the environment's
        centers (their scale and plus-minus pair draw nothing)."""
        offset = torch.rand((1,), generator=generator).reshape(())
        return {"W": self.head(generator), "offset": offset}

    def center_logits(self, params: Params, x: Tensor, tape: Tape = PLAIN) -> Tensor:
        """−score of each center, the softmax's input; the minus sign rides on the scalar
        factor ((−s)·a equals −(s·a) exactly), which saves a pass over (R, B, k)."""
        d = dot_over_norm(x, self.centers)
        return -SHARP * minus_offset(d, params["offset"], tape).abs()

    def taped_forward(self, params: Params, x: Tensor, tape: Tape) -> Tensor:
        p = torch.softmax(self.center_logits(params, x, tape), dim=-1)
        return tape.linear("W", p, head(p, params["W"]))


class OffsetScale(LearnOffset):
    """p = softmax(−s·|d − o|), scale s = 1 and o ~ U(0, 1): learns the softmax's sharpness too."""

    def init(self, generator: torch.Generator) -> Params:
        return {**super().init(generator), "scale": torch.ones(())}

    def abs(self, z: Tensor, params: Params, tape: Tape = PLAIN) -> Tensor:
        """|z|, or what stands for it in the rungs below; z is the caller's own tensor."""
        return z.abs()

    def dots(self, params: Params, x: Tensor, tape: Tape = PLAIN) -> Tensor:
        """d_j for the environment's centers, or in the rung below for its own."""
        return dot_over_norm(x, self.centers)

    def center_logits(self, params: Params, x: Tensor, tape: Tape = PLAIN) -> Tensor:
        z = minus_offset(self.dots(params, x, tape), params["offset"], tape)
        score = self.abs(z, params, tape)
        if torch.is_grad_enabled():
            return tape.scaled("scale", lambda: -score, per_run(-params["scale"], 3) * score)
        return score.mul_(per_run(-params["scale"], 3))  # eval: in place, the same numbers


class AbsRelu(OffsetScale):
    """As ``offset_scale``, with |z| written relu(z) + relu(−z)."""

    def abs(self, z: Tensor, params: Params, tape: Tape = PLAIN) -> Tensor:
        return F.relu(z) + F.relu(-z)


class PlusMinus(OffsetScale):
    """score_j = Σ_i relu((d_j − o)·pm_i) with pm = 0.4·(−1, 1) trainable: learns |·| itself."""

    def init(self, generator: torch.Generator) -> Params:
        return {**super().init(generator), "plus_minus": 0.4 * torch.tensor([-1.0, 1.0])}

    def abs(self, z: Tensor, params: Params, tape: Tape = PLAIN) -> Tensor:
        pm = per_run(params["plus_minus"], 4)  # (R, 1, 1, 2)
        # the sum over i written out: one (R, B, k) op per entry beats a trailing axis of 2
        if torch.is_grad_enabled():
            minus = tape.scaled("plus_minus", z, z * pm[..., 0], index=0)
            return F.relu(minus) + F.relu(tape.scaled("plus_minus", z, z * pm[..., 1], index=1))
        # eval: the same numbers over two buffers instead of five, z's own among them; the
        # passes stay in cache, and centers' eval runs 1.6× faster (measured here)
        score = (z * pm[..., 0]).relu_()
        return score.add_(z.mul_(pm[..., 1]).relu_())


class Centers(PlusMinus):
    """As ``plus_minus``, with H trainable centers (2048, initialised 100·N(0, 1)) in place of the environment's."""

    def __init__(
        self, centers: Tensor, center_labels: Tensor, classes: int, hidden_dim: int
    ) -> None:
        super().__init__(centers, center_labels, classes)
        self.hidden_dim = hidden_dim

    @property
    def width(self) -> int:
        return self.hidden_dim

    def init(self, generator: torch.Generator) -> Params:
        """The original's order: the centers (randn (H, D)), then the offset, then the head."""
        centers = 100.0 * torch.randn((self.hidden_dim, self.centers.shape[1]), generator=generator)
        offset = torch.rand((1,), generator=generator).reshape(())
        return {
            "W": torch_linear(self.hidden_dim, self.classes, generator)[0],
            "offset": offset,
            "scale": torch.ones(()),
            "plus_minus": 0.4 * torch.tensor([-1.0, 1.0]),
            "centers": centers,
        }

    def dots(self, params: Params, x: Tensor, tape: Tape = PLAIN) -> Tensor:
        d = dot_over_norm(x, params["centers"])
        return tape.linear("centers", x, d, rows=inverse_point)


class Generalized:
    """The paper's work-in-progress rung: z = Linear(D→H, bias)(x/100); p = softmax(−s ⊙ act(z)).

    s ∈ R^H starts at 1; act is SiLU (as the original ran it) or |·| (as its README writes it).
    """

    def __init__(self, dim: int, classes: int, hidden_dim: int, activation: str) -> None:
        self.dim, self.classes, self.hidden_dim = dim, classes, hidden_dim
        self.width = hidden_dim
        self.act = F.silu if activation == "silu" else torch.abs
        self.act_ = functools.partial(F.silu, inplace=True) if activation == "silu" else Tensor.abs_

    def to(self, device: torch.device) -> Generalized:
        return self

    def init(self, generator: torch.Generator) -> Params:
        """The original's order: Linear(D→H, bias) (its weight, then its bias), then the
        head Linear(H→C) (the scale draws nothing)."""
        weight, bias = torch_linear(self.dim, self.hidden_dim, generator, bias=True)
        return {
            "weight": weight,
            "bias": bias,
            "scale": torch.ones(self.hidden_dim),
            "W": torch_linear(self.hidden_dim, self.classes, generator)[0],
        }

    def forward(self, params: Params, x: Tensor) -> Tensor:
        return self.taped_forward(params, x, PLAIN)

    def taped_forward(self, params: Params, x: Tensor, tape: Tape) -> Tensor:
        """The forward with each trained tensor entering through ``tape``
        (``optlab.engine.grad_moments``)."""
        x = x / 100.0
        z = tape.linear("weight", x, thin_matmul(x, params["weight"]))
        bias, minus_scale = per_run(params["bias"], 3), per_run(-params["scale"], 3)
        if torch.is_grad_enabled():
            act = self.act(tape.scaled("bias", 1.0, z + bias))
            score = tape.scaled("scale", lambda: -act, minus_scale * act)
        else:  # eval: the same numbers, in z's own buffer
            score = self.act_(z.add_(bias)).mul_(minus_scale)
        p = torch.softmax(score, dim=-1)
        return tape.linear("W", p, head(p, params["W"]))
