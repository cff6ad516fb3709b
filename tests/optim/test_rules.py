"""The rules against torch.optim (float64, 1000 steps, 1e-6 relative), closed forms, and stacking."""

import inspect

import pytest
import torch

from optlab import optim
from optlab.optim import decay, rules

STEPS = 1000


def _train(cls, kwargs, steps=STEPS):
    """A fixed quartic-plus-noise objective on one 5×3 tensor, same data for every optimizer."""
    p = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    p.requires_grad_()
    opt = cls([p], **kwargs)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        target = torch.randn(5, 3, generator=g, dtype=torch.float64)
        opt.zero_grad()
        (((p - target) ** 2).sum() + 0.01 * p.pow(4).sum()).backward()
        opt.step()
    return p.detach()


CASES = [
    (optim.AdamW, torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)),
    (optim.Adam, torch.optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
    (optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9, weight_decay=0.1)),
    (optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9, weight_decay=0.1, nesterov=True)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, weight_decay=0.1)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, momentum=0.5, centered=True)),
]


@pytest.mark.parametrize("ours,theirs,kwargs", CASES)
def test_matches_torch_optim_after_1000_steps(ours, theirs, kwargs):
    a, b = _train(ours, kwargs), _train(theirs, kwargs)
    assert torch.allclose(a, b, rtol=1e-6, atol=0)
    assert not torch.allclose(a, _train(theirs, kwargs, steps=10))  # the run moved the weights


def test_adamw_state_dict_round_trips():
    p = torch.ones(3, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    clone = optim.AdamW([torch.ones(3, requires_grad=True)], lr=0.1)
    clone.load_state_dict(opt.state_dict())
    assert torch.equal(
        clone.state[clone.param_groups[0]["params"][0]]["exp_avg"], opt.state[p]["exp_avg"]
    )


def test_decay_closed_forms():
    theta = torch.tensor([[2.0, -0.5, 1.0]])  # one run
    lr, wd = 0.1, 0.5
    assert torch.allclose(decay.l2(theta, lr, wd), theta * (1 - 0.05))  # θ − ηλθ
    assert torch.allclose(
        decay.l1(theta, lr, wd), torch.tensor([[1.95, -0.45, 0.95]])
    )  # θ − ηλ sign θ
    # min: θ − η·min|θ|·sign θ with min|θ| = 0.5 over the tensor; λ not applied
    assert torch.allclose(decay.min_abs(theta, lr, wd), torch.tensor([[1.95, -0.45, 0.95]]))
    assert torch.equal(decay.no_decay(theta, lr, wd), theta)


def test_min_decay_reduces_per_run_not_across_runs():
    theta = torch.tensor([[2.0, 1.0], [4.0, -3.0]])
    out = decay.min_abs(theta, 1.0, 0.0)
    assert torch.allclose(out, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # run 0: min 1; run 1: min 3


def test_adamw_first_step_is_lr_times_sign_plus_decay():
    """At t = 1, m̂ = g and v̂ = g², so the step is η·g/(|g| + ε) ≈ η·sign g after θ(1 − ηλ)."""
    theta, grad = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.3, -4.0]])
    new, _ = rules.adamw(
        theta,
        grad,
        rules.adam_init(theta),
        1,
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        eps=0.0,
        weight_decay=0.5,
    )
    assert torch.allclose(new, torch.tensor([[0.95 - 0.1, -1.9 + 0.1]]))


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "rmsprop"])
def test_stacked_runs_match_separate_runs(name):
    """R runs with R different hyperparameters in one call equal R calls of one run each."""
    rule = optim.OPTIMIZERS[name]
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
    hyper = dict(
        lr=[1e-3, 1e-2, 3e-2],
        beta1=[0.9, 0.8, 0.95],
        beta2=[0.999, 0.99, 0.98],
        eps=[1e-8, 1e-6, 1e-3],
        weight_decay=[0.0, 1e-2, 1.0],
        momentum=[0.0, 0.5, 0.9],
        alpha=[0.99, 0.9, 0.5],
    )
    names = [n for n in inspect.signature(rule.update).parameters if n in hyper]
    stacked_hp = {k: torch.tensor(hyper[k], dtype=torch.float64) for k in names}
    p, state = theta.clone(), rule.init(theta)
    singles = [(theta[r : r + 1].clone(), rule.init(theta[r : r + 1])) for r in range(3)]
    for t in range(1, 21):
        grad = torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
        p, state = rule.update(p, grad, state, t, **stacked_hp)
        singles = [
            rule.update(sp, grad[r : r + 1], ss, t, **{k: hyper[k][r] for k in names})
            for r, (sp, ss) in enumerate(singles)
        ]
    assert torch.allclose(p, torch.cat([sp for sp, _ in singles]), rtol=1e-12, atol=0)
