"""Decay groups by name pattern: first match wins; torch parameter groups."""

import torch

from optlab.optim import param_groups
from optlab.optim.groups import weight_decay_for


def test_first_matching_pattern_sets_the_decay():
    groups = {"*.norm": 0.0, "dense1.*": 0.5, "*": 0.1}
    assert weight_decay_for("dense1.norm", groups) == 0.0
    assert weight_decay_for("dense1.w1", groups) == 0.5
    assert weight_decay_for("final.w", groups) == 0.1
    assert weight_decay_for("W", {"*.norm": 0.0}) is None


def test_param_groups_drive_torch_adamw():
    """No decay on the norm gain: with zero gradients only the weight shrinks, by (1 − ηλ)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.LayerNorm(2))
    groups = param_groups(model.named_parameters(), {"1.*": 0.0}, weight_decay=0.5)
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]
    w0, g0 = model[0].weight.detach().clone(), model[1].weight.detach().clone()
    opt = torch.optim.AdamW(groups, lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(model[0].weight, w0 * 0.95) and torch.equal(model[1].weight, g0)
