"""Grafting: Graft(M, M) = M, and Graft(M, D) takes M's step length along D's direction."""

import pytest
import torch

from optlab.optim import OPTIMIZERS, graft, graft_tree, rules
from optlab.optim.apply import tree_step

HYPER = {
    "adamw": dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, decay="l2"),
    "sgd": dict(lr=1e-2, momentum=0.9, weight_decay=0.0, nesterov=False),
    "nested_adam": dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0),
    "signum": dict(lr=1e-2, beta1=0.9, weight_decay=0.0),
}


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(2, 4, 3, generator=g, dtype=torch.float64),
        "b": torch.randn(2, 3, generator=g, dtype=torch.float64),
    }


def _grads(params, t):
    g = torch.Generator().manual_seed(100 + t)
    return {
        k: torch.randn(p.shape, generator=g, dtype=torch.float64) + p for k, p in params.items()
    }


def _train(rule, hyper, steps=100):
    params = _params()
    states = {k: rule.init(p) for k, p in params.items()}
    for t in range(1, steps + 1):
        params, states = tree_step(
            rule, params, _grads(params, t), states, t, dict.fromkeys(params, hyper)
        )
    return params


@pytest.mark.parametrize("name", list(HYPER))
@pytest.mark.parametrize("mode", ["tensor", "global"])
def test_graft_of_a_rule_with_itself_is_that_rule(name, mode):
    child = {"rule": name, **HYPER[name]}
    grafted = _train(OPTIMIZERS["graft"], {"magnitude": child, "direction": child, "graft": mode})
    plain = _train(OPTIMIZERS[name], HYPER[name])
    for k in plain:
        assert torch.allclose(grafted[k], plain[k], rtol=1e-12, atol=1e-14)


def _norm(x):
    return x.flatten(1).norm(dim=1)


def test_graft_takes_the_magnitudes_length_and_the_directions_direction():
    """M = plain SGD (step η‖g‖), D = AdamW: per tensor, ‖Δ‖ = η‖g‖ and Δ ∥ Δ_AdamW;
    globally, only the norm over all parameters is M's."""
    sgd = {"rule": "sgd", **{**HYPER["sgd"], "momentum": 0.0}}
    adam = {"rule": "adamw", **HYPER["adamw"]}
    params, grads = _params(), _grads(_params(), 1)
    for mode in ("tensor", "global"):
        hyper = {"magnitude": sgd, "direction": adam, "graft": mode}
        moved, _ = graft_tree(
            params,
            grads,
            {k: {} for k in params},
            1,
            dict.fromkeys(params, hyper),
            rules=OPTIMIZERS,
        )
        deltas = {k: moved[k] - params[k] for k in params}
        for k, p in params.items():
            d, _ = rules.adamw(p, grads[k], rules.adam_init(p), 1, **HYPER["adamw"])
            cos = (deltas[k] * (d - p)).flatten(1).sum(1) / (_norm(deltas[k]) * _norm(d - p))
            assert torch.allclose(cos, torch.ones(2, dtype=torch.float64), rtol=1e-12)
        if mode == "tensor":
            for k in params:
                assert torch.allclose(_norm(deltas[k]), 1e-2 * _norm(grads[k]), rtol=1e-12)
        else:
            total = sum(_norm(d) ** 2 for d in deltas.values()).sqrt()
            target = 1e-2 * sum(_norm(g) ** 2 for g in grads.values()).sqrt()
            assert torch.allclose(total, target, rtol=1e-12)
            assert not torch.allclose(_norm(deltas["b"]), 1e-2 * _norm(grads["b"]), rtol=1e-3)


def test_graft_with_a_still_direction_stays_put():
    p = torch.ones(1, 3, dtype=torch.float64)
    child_m = {"rule": "sgd", **HYPER["sgd"]}
    child_d = {"rule": "sgd", **{**HYPER["sgd"], "lr": 1e-2}}
    out, _ = graft(
        p, torch.zeros_like(p), {}, 1, magnitude=child_m, direction=child_d, rules=OPTIMIZERS
    )
    assert torch.equal(out, p)  # Δ_D = 0: no direction, no step (not 0/0)
