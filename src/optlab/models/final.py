"""The paper's final model (Yu 2022, Algorithm 4), written over a stack of R runs.

x/100 → Dense(D→H→H) → ReducedAttention → Dense(H→H→C) → ReducedLayerNorm(C), where
ReducedLayerNorm(n) multiplies by a weight vector initialised to 1, optionally after
normalising x·rsqrt(mean(x²) + 1e-6); Dense(in, hid, out) = ReducedLayerNorm(in) →
Linear(in→hid) → nonlinearity → Linear(hid→out), both Linears without bias;
ReducedAttention(H) = ReducedLayerNorm(H) then a softmax over the H features.
Weights are stored (in, out) so that a layer reads x @ W.

``init`` draws as the original module did when constructed after ``torch.manual_seed(seed)``:
the two Linears of each Dense in nn.Linear's own init, drawn (out, in) and transposed; with
``init="normal"`` those draws are still made, then overwritten as the original did, by
N(0, in^-½) for the first Linear and N(0, hid^-½) for the second.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from optlab.models.base import PLAIN, Params, Tape, torch_linear
from optlab.stacking import per_run

NONLINEARITIES = {"relu": F.relu, "swish": F.silu, "gelu": F.gelu}
RMS_EPS = 1e-6


class Final:
    def __init__(
        self,
        dim: int,
        classes: int,
        hidden_dim: int,
        nonlinearity: str = "relu",
        init: str = "uniform",
        layernorm_normalization: bool = False,
    ) -> None:
        self.dim, self.classes, self.hidden_dim = dim, classes, hidden_dim
        self.width = hidden_dim
        self.act = NONLINEARITIES[nonlinearity]
        self.init_kind = init
        self.normalize = layernorm_normalization

    def to(self, device: torch.device) -> Final:
        return self

    @property
    def scale_invariant(self) -> tuple[str, ...]:
        """Weights whose scale the next normalised layernorm divides out (only with
        ``layernorm_normalization``): each Dense's output weight, and its input weight too
        when the nonlinearity is ReLU (positively homogeneous), so ReLU(cx) = c·ReLU(x)."""
        if not self.normalize:
            return ()
        w1 = ("dense1.w1", "dense2.w1") if self.act is F.relu else ()
        return (*w1, "dense1.w2", "dense2.w2")

    def _dense(self, d_in: int, d_hid: int, d_out: int, g: torch.Generator) -> list[Tensor]:
        """A Dense's two weights (in, hid) and (hid, out), drawn in the original's order:
        both Linears at construction, then, for the normal init, the first Linear's weight
        redrawn N(0, in^-½) and the second's N(0, hid^-½), each in nn.Linear's (out, in)
        shape."""
        w1, w2 = torch_linear(d_in, d_hid, g)[0], torch_linear(d_hid, d_out, g)[0]
        if self.init_kind != "normal":
            return [w1, w2]
        return [
            torch.empty(n_out, n_in).normal_(0.0, n_in**-0.5, generator=g).T.contiguous()
            for n_in, n_out in ((d_in, d_hid), (d_hid, d_out))
        ]

    def init(self, generator: torch.Generator) -> Params:
        """The original's order: the first Dense's Linears, then the classification head's
        (the layernorm weights, all ones, draw nothing)."""
        d, h, c = self.dim, self.hidden_dim, self.classes
        w1, w2 = self._dense(d, h, h, generator)
        w3, w4 = self._dense(h, h, c, generator)
        return {
            "dense1.norm": torch.ones(d),
            "dense1.w1": w1,
            "dense1.w2": w2,
            "attention.norm": torch.ones(h),
            "dense2.norm": torch.ones(h),
            "dense2.w1": w3,
            "dense2.w2": w4,
            "final.norm": torch.ones(c),
        }

    def layernorm(self, x: Tensor, weight: Tensor, name: str = "", tape: Tape = PLAIN) -> Tensor:
        """RMS normalisation where the model normalises, then the weight (the training step of
        a model that does not folds its weights into the matrices, ``folded_forward``)."""
        if self.normalize:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)
        return tape.scaled(name, x, x * per_run(weight, x.dim()))

    def dense(self, x: Tensor, params: Params, prefix: str, tape: Tape = PLAIN) -> Tensor:
        x = self.layernorm(x, params[f"{prefix}.norm"], f"{prefix}.norm", tape)
        w1, w2 = params[f"{prefix}.w1"], params[f"{prefix}.w2"]
        h = self.act(tape.linear(f"{prefix}.w1", x, x @ w1))
        return tape.linear(f"{prefix}.w2", h, h @ w2)

    def forward(self, params: Params, x: Tensor) -> Tensor:
        if not self.normalize:
            return self.folded_forward(params, x)
        return self.per_example_forward(params, x)

    def per_example_forward(self, params: Params, x: Tensor) -> Tensor:
        """The model as written, each layernorm weight its own product: what per-example
        gradients differentiate (``optlab.engine.per_sample``), where each example's (H, H)
        gradient is then one outer product, which the folded form scales by n again."""
        return self.taped_forward(params, x, PLAIN)

    def taped_forward(self, params: Params, x: Tensor, tape: Tape) -> Tensor:
        """``per_example_forward`` with each trained tensor entering through ``tape``: the
        grad_stats probe's per-coordinate moments come from one backward of it
        (``optlab.engine.grad_moments``)."""
        h = self.dense(x / 100.0, params, "dense1", tape)
        norm = self.layernorm(h, params["attention.norm"], "attention.norm", tape)
        h = self.dense(torch.softmax(norm, dim=-1), params, "dense2", tape)
        return self.layernorm(h, params["final.norm"], "final.norm", tape)

    def folded_forward(self, params: Params, x: Tensor) -> Tensor:
        """The same function without normalisation, each layernorm weight folded into the
        weight matrix beside it: (x ⊙ n) W = x (diag(n) W) and (x W) ⊙ n = x (W diag(n)).
        The products are (H, H) instead of (B, H), which saves four passes over the
        activations per step, forward and backward (about 10% of a step at H = 512)."""
        p = params
        w1 = p["dense1.w1"] * (p["dense1.norm"] / 100.0).unsqueeze(-1)
        w2 = p["dense1.w2"] * p["attention.norm"].unsqueeze(-2)
        h = torch.softmax(self.act(x @ w1) @ w2, dim=-1)
        w3 = p["dense2.w1"] * p["dense2.norm"].unsqueeze(-1)
        w4 = p["dense2.w2"] * p["final.norm"].unsqueeze(-2)
        return self.act(h @ w3) @ w4
