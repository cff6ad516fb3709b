"""Schedules by hand, and the notepad's equivalence: an lr schedule = a per-coordinate ε schedule."""

import math

import pytest
import torch

from optlab.config import OptimizerSpec, ScheduleSpec
from optlab.optim import rules, schedules


def test_schedule_values_by_hand():
    assert [schedules.warmup(t, 4) for t in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    # cosine over T = 11 with 1 warmup step: factor 1 at t = 2, ½(1 + cos(π/2)) = ½ at t = 7
    assert schedules.cosine(1, 11, 1) == 1.0
    assert schedules.cosine(2, 11, 1) == 1.0
    assert schedules.cosine(7, 11, 1, final=0.0) == pytest.approx(0.5)
    assert schedules.cosine(7, 11, 1, final=0.2) == pytest.approx(0.6)
    assert [schedules.step(t, [3, 6], 0.1) for t in (3, 4, 6, 7)] == pytest.approx(
        [1.0, 0.1, 0.1, 0.01]
    )
    assert schedules.step(5, [3], 10.0, warmup_steps=0) == 10.0  # ε grows at a milestone
    assert schedules.batch_sizes(32, [2, 4], 2, 6) == [32, 32, 64, 64, 128, 128]


def test_make_schedule_reads_a_spec():
    f = schedules.make_schedule(ScheduleSpec(kind="cosine", warmup=2), 10)
    assert (
        f(1) == 0.5
        and f(3) == 1.0
        and f(10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    )
    with pytest.raises(ValueError, match="horizon"):
        schedules.make_schedule(ScheduleSpec(kind="cosine"), 0)


def test_lr_schedule_and_its_equivalent_eps_schedule_give_one_trajectory():
    """Adam at η_t = η·f(t) and Adam at constant η with ε_t = (η/η_t − 1)√v̂ + (η/η_t)ε take the
    same 500 steps (float64), with warmup, cosine decay and coupled decay in the gradient."""
    spec = OptimizerSpec(
        name="adam",
        eps_schedule={"kind": "lr_equivalent"},
        lr_schedule={"kind": "cosine", "warmup": 20, "final": 0.05},
    )
    lr_f, eps_f, ratio = schedules.optimizer_schedules(spec, 500)
    assert lr_f(50) == 1.0 and eps_f(50) == 1.0  # η and ε held; r_t carries the schedule
    f = schedules.make_schedule(spec.lr_schedule, 500)
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(1, 8, generator=gen, dtype=torch.float64)
    q, sp, sq = p.clone(), rules.adam_init(p), rules.adam_init(p)
    for t in range(1, 501):
        noise = torch.randn(1, 8, generator=gen, dtype=torch.float64)
        p, sp = rules.adam(p, p + noise, sp, t, lr=3e-2 * f(t), **hyper)
        q, sq = rules.adam(q, q + noise, sq, t, lr=3e-2, eps_lr_ratio=ratio(t), **hyper)
    assert torch.allclose(p, q, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(p, rules.adam(p, p, sp, 501, lr=3e-2, **hyper)[0])  # still moving


def test_lr_equivalent_eps_is_the_notepads_formula():
    sqrt_v = torch.tensor([0.0, 1.0, 4.0])
    eps = schedules.lr_equivalent_eps(sqrt_v, 1e-3, 4.0)  # η/η_t = 4
    assert torch.allclose(eps, 3 * sqrt_v + 4e-3)
    # and √v̂ + ε_t = (η/η_t)(√v̂ + ε): the step shrinks by exactly η_t/η
    assert torch.allclose(sqrt_v + eps, 4 * (sqrt_v + 1e-3))


def test_fractional_milestones_scale_with_the_horizon():
    assert schedules.at_steps([0.5, 0.75, 300], 1000) == [500, 750, 300]
    f = schedules.make_schedule(ScheduleSpec(kind="step", milestones=[0.5], gamma=0.1), 10)
    assert (f(5), f(6)) == (1.0, pytest.approx(0.1))
    assert schedules.batch_sizes(8, [0.5], 4, 4) == [8, 8, 32, 32]
    with pytest.raises(ValueError, match="horizon"):
        schedules.at_steps([0.5], 0)


def test_any_eps_schedule_function_drives_torch_adam_as_the_rule_sees_it():
    """LambdaEps on torch.optim.Adam with ε ×100 after step 20 equals the Adam rule given
    ε_t = ε·f(t) at each step (float64, 60 steps)."""
    f = lambda t: schedules.step(t, [20], 100.0)  # noqa: E731
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    p, state = w.detach().clone()[None], rules.adam_init(w[None])
    opt = torch.optim.Adam([w], lr=1e-2, eps=1e-4)
    eps_sched = schedules.LambdaEps(opt, f)
    for t in range(1, 61):
        noise = torch.randn(3, 2, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        ((w - noise) ** 2).sum().backward()
        opt.step()
        eps_sched.step()
        hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-4 * f(t), weight_decay=0.0)
        p, state = rules.adam(p, 2 * (p - noise), state, t, **hyper)
    assert torch.allclose(w.detach(), p[0], rtol=1e-10)
    assert opt.param_groups[0]["eps"] == pytest.approx(1e-2)


def test_li_arora_without_momentum_is_the_closed_form():
    f = schedules.li_arora(lr_decay=0.01, momentum=0.0)
    assert [f(t) for t in (1, 2, 50)] == pytest.approx([0.99 ** -(2 * t - 1) for t in (1, 2, 50)])


def test_li_arora_grows_as_the_larger_root_says():
    lr_decay, gamma = 2.5e-4, 0.9
    a = 1 + gamma - lr_decay
    alpha = (a + math.sqrt(a * a - 4 * gamma)) / 2
    f = schedules.li_arora(lr_decay, gamma)
    assert f(3001) / f(3000) == pytest.approx(alpha**-2, rel=1e-9)


@pytest.mark.parametrize("gamma", [0.0, 0.9])
def test_decay_at_a_constant_lr_equals_no_decay_under_the_li_arora_schedule(gamma):
    """On a scale-invariant loss, SGD with momentum and coupled decay (torch.optim.SGD's
    form) and SGD without decay under the schedule give the same directions w/‖w‖."""
    g = torch.Generator().manual_seed(0)
    a, target = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, generator=g)

    def grad(w):
        w = w.detach().requires_grad_()
        return torch.autograd.grad(((a @ (w / w.norm()) - target) ** 2).sum(), w)[0]

    lr, lam = 0.05, 0.02
    decayed = torch.randn(6, generator=g, dtype=torch.float64)
    scheduled = decayed.clone()
    f = schedules.li_arora(lr * lam, gamma)
    b1 = b2 = torch.zeros(6, dtype=torch.float64)
    for t in range(1, 301):
        b1 = gamma * b1 + grad(decayed) + lam * decayed if t > 1 else grad(decayed) + lam * decayed
        decayed = decayed - lr * b1
        b2 = gamma * b2 + grad(scheduled) if t > 1 else grad(scheduled)
        scheduled = scheduled - lr * f(t) * b2
    gap = (decayed / decayed.norm() - scheduled / scheduled.norm()).norm()
    assert gap < 1e-10
    grown = float(scheduled.norm() / decayed.norm())  # c_T: the undecayed weights grew
    if gamma == 0:
        assert grown == pytest.approx((1 - lr * lam) ** -300, rel=1e-9)
    assert grown > 1.3


def test_li_arora_reads_its_own_fields_only():
    with pytest.raises(ValueError, match="lr_decay"):
        ScheduleSpec(kind="cosine", lr_decay=0.1)
    with pytest.raises(ValueError, match="ηλ > 0"):
        ScheduleSpec(kind="li_arora")
