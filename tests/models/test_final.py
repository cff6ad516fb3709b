"""The final model against an nn.Module written from the paper's Algorithm 4."""

import pytest
import torch
from torch import nn

from optlab.config import ModelSpec
from optlab.models import build_model
from optlab.tasks.voronoi import make_environment

ENV = make_environment(2, 2, 64, 300, 10, 42, "paper")


class ReducedLayerNorm(nn.Module):
    def __init__(self, n, normalize):
        super().__init__()
        self.weight, self.normalize = nn.Parameter(torch.ones(n)), normalize

    def forward(self, x):
        if self.normalize:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * x


class Reference(nn.Module):
    def __init__(self, h, act, normalize):
        super().__init__()
        self.n1, self.l1a, self.l1b = (
            ReducedLayerNorm(2, normalize),
            nn.Linear(2, h, False),
            nn.Linear(h, h, False),
        )
        self.na = ReducedLayerNorm(h, normalize)
        self.n2, self.l2a, self.l2b = (
            ReducedLayerNorm(h, normalize),
            nn.Linear(h, h, False),
            nn.Linear(h, 2, False),
        )
        self.nf, self.act = ReducedLayerNorm(2, normalize), act

    def forward(self, x):
        x = self.l1b(self.act(self.l1a(self.n1(x / 100))))
        x = torch.softmax(self.na(x), -1)
        return self.nf(self.l2b(self.act(self.l2a(self.n2(x)))))


@pytest.mark.parametrize(
    "nonlinearity,act", [("relu", nn.ReLU()), ("swish", nn.SiLU()), ("gelu", nn.GELU())]
)
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_reference_module(nonlinearity, act, normalize):
    model = build_model(
        ModelSpec(
            name="final",
            hidden_dim=16,
            nonlinearity=nonlinearity,
            layernorm_normalization=normalize,
        ),
        ENV,
    )
    p = model.init(torch.Generator().manual_seed(0))
    p = {k: v + 0.1 * torch.randn_like(v) if k.endswith("norm") else v for k, v in p.items()}
    ref = Reference(16, act, normalize)
    with torch.no_grad():
        for mod, key in [
            (ref.n1, "dense1.norm"),
            (ref.na, "attention.norm"),
            (ref.n2, "dense2.norm"),
            (ref.nf, "final.norm"),
        ]:
            mod.weight.copy_(p[key])
        for lin, key in [
            (ref.l1a, "dense1.w1"),
            (ref.l1b, "dense1.w2"),
            (ref.l2a, "dense2.w1"),
            (ref.l2b, "dense2.w2"),
        ]:
            lin.weight.copy_(p[key].T)  # nn.Linear stores (out, in)
    x = torch.from_numpy(ENV.points["eval"])
    ours = model.forward({k: v[None] for k, v in p.items()}, x[None])[0]
    assert torch.allclose(ours, ref(x), atol=1e-5)


def test_normal_init_std():
    model = build_model(ModelSpec(name="final", hidden_dim=1024, init="normal"), ENV)
    p = model.init(torch.Generator().manual_seed(0))
    assert abs(p["dense2.w1"].std().item() - 1024**-0.5) < 0.01 * 1024**-0.5  # N(0, in^-½)
    assert abs(p["dense1.w2"].std().item() - 1024**-0.5) < 0.01 * 1024**-0.5  # N(0, hid^-½)
