"""The registry's declarations: each rule's step degree against its own update."""

import pytest
import torch

from optlab.config import OptimizerSpec
from optlab.optim import OPTIMIZERS

# rules that step tensor by tensor (graft and kfac step over all parameters at once)
BUILT_IN = [name for name, rule in OPTIMIZERS.items() if rule.tree is None]


@pytest.mark.parametrize("name", BUILT_IN)
def test_step_degree_is_how_the_step_scales_with_the_gradients(name):
    """Δθ(c·g) = c^k·Δθ(g) at each of three steps from the same θ (so the state too has
    seen c·g), with c = 3, momentum 0.9 where the rule has one, no decay and ε = 0 (ε is
    what makes Adam's kin and RMSprop depend on the gradient's scale at all)."""
    rule, c = OPTIMIZERS[name], 3.0
    spec = OptimizerSpec(name=name, lr=0.1, weight_decay=0.0, eps=0.0, momentum=0.9)
    hyper = rule.hyper(spec)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
    state, state_c = rule.init(theta), rule.init(theta)
    for t in range(1, 4):
        g = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
        stepped, state = rule.update(theta, g, state, t, **hyper)
        scaled, state_c = rule.update(theta, c * g, state_c, t, **hyper)
        expect = c**rule.step_degree * (stepped - theta)
        torch.testing.assert_close(scaled - theta, expect, rtol=1e-12, atol=0)
        theta = stepped
