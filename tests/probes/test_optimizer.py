"""Optimizer probes: Adam moments and the decay/adaptive split of one AdamW step, by hand."""

import math

import pytest
import torch

from optlab.config import OptimizerSpec
from optlab.engine.optimizer import StackedOptimizer
from optlab.probes.base import Evaluation, Observation
from optlab.probes.optimizer import make_update, moments, split_update, step_ratios

NO_EVAL = Evaluation(torch.zeros(1), torch.zeros(1), {}, None)


def test_moments_after_one_adam_step():
    # After one step with gradient g: m̂ = g and v̂ = g², so √v̂ = |g| and ‖m̂‖ = ‖g‖.
    w = {"w": torch.zeros(1, 3)}
    opt = StackedOptimizer([OptimizerSpec(name="adamw")], w)
    g = torch.tensor([[1.0, -2.0, 4.0]])
    opt.step([g])
    out = moments(Observation(step=1, params=w, evaluation=NO_EVAL, optimizer=opt))
    assert out["w/sqrt_v_hat_min"].item() == pytest.approx(1.0)
    assert out["w/sqrt_v_hat_median"].item() == pytest.approx(2.0)
    assert out["w/sqrt_v_hat_max"].item() == pytest.approx(4.0)
    assert out["w/m_hat_norm"].item() == pytest.approx(math.sqrt(21))


def test_moments_record_nothing_for_sgd():
    w = {"w": torch.zeros(1, 3)}
    opt = StackedOptimizer([OptimizerSpec(name="sgd")], w)
    opt.step([torch.ones(1, 3)])
    assert moments(Observation(step=1, params=w, evaluation=NO_EVAL, optimizer=opt)) == {}


def test_first_adamw_step_splits_into_decay_and_adaptive():
    # θ = (3, 4), ‖θ‖ = 5, η = 0.1, λ = 0.5. First step: m̂/(√v̂+ε) = sign(g) = (1, 1)
    # (ε = 0), so Δθ_adaptive = −η(1, 1), ‖·‖ = 0.1√2; Δθ_decay = −ηλθ = −0.05(3, 4), ‖·‖ = 0.25.
    spec = OptimizerSpec(name="adamw", lr=0.1, weight_decay=0.5, eps=0.0)
    w = {"w": torch.tensor([[3.0, 4.0]])}
    opt = StackedOptimizer([spec], w)
    grads = [torch.tensor([[2.0, 7.0]])]
    before, adaptive = split_update(opt, w, grads)
    opt.step(grads)
    update = make_update(before, adaptive, w, grads)
    out = step_ratios(Observation(step=1, params=w, evaluation=NO_EVAL, update=update))
    dec, ada = 0.25, 0.1 * math.sqrt(2)
    total = math.hypot(0.15 + 0.1, 0.2 + 0.1)  # Δθ = −(0.25, 0.3)
    assert out["w/decay_ratio"].item() == pytest.approx(dec / 5)
    assert out["w/adaptive_ratio"].item() == pytest.approx(ada / 5)
    assert out["w/update_ratio"].item() == pytest.approx(total / 5)
    assert out["w/decay_share"].item() == pytest.approx(dec / (dec + ada))
    assert torch.allclose(w["w"], torch.tensor([[2.75, 3.7]]))  # the real step was taken


def test_no_update_at_step_zero():
    w = {"w": torch.ones(1, 2)}
    assert step_ratios(Observation(step=0, params=w, evaluation=NO_EVAL)) == {}


def test_import_path_optimizer_gives_the_ratio_but_no_split():
    # torch.optim.SGD, lr 0.1, g = (3, 4): Δθ = −0.1·g, ‖Δθ‖ = 0.5; θ = (0, 5): ratio 0.1
    w = {"w": torch.tensor([[0.0, 5.0]])}
    opt = StackedOptimizer([OptimizerSpec(name="torch.optim.SGD", lr=0.1)], w)
    grads = [torch.tensor([[3.0, 4.0]])]
    before, adaptive = split_update(opt, w, grads)
    assert adaptive is None
    opt.step(grads)
    obs = Observation(
        step=1, params=w, evaluation=NO_EVAL, update=make_update(before, None, w, grads)
    )
    out = step_ratios(obs)
    assert set(out) == {"w/update_ratio"} and out["w/update_ratio"].item() == pytest.approx(0.1)
    assert moments(Observation(step=1, params=w, evaluation=NO_EVAL, optimizer=opt)) == {}


def test_decayed_init_by_the_closed_form():
    # Zero gradients: AdamW's adaptive step is 0, so w_k = P_k w_0 with P_k = (1 − λη)^k:
    # distance 0 and angle 0. With a gradient, the distance is ‖w_k − (1 − λη)^k w_0‖ by hand.
    from optlab.probes.optimizer import decayed_init

    spec = OptimizerSpec(name="adamw", lr=0.1, weight_decay=0.5)
    w0 = torch.tensor([[3.0, 4.0], [1.0, -1.0]])  # two runs
    for grad, moved in (
        (torch.zeros(2, 2), False),
        (torch.tensor([[1.0, -1.0], [2.0, 0.5]]), True),
    ):
        w = {"w": w0.clone()}
        opt = StackedOptimizer([spec, spec], w)
        for _ in range(5):
            opt.step([grad])
        obs = Observation(step=5, params=w, evaluation=NO_EVAL, init={"w": w0}, optimizer=opt)
        out = decayed_init(obs)
        expected = (w["w"] - 0.95**5 * w0).norm(dim=1)
        assert torch.allclose(out["w/distance"], expected, atol=1e-6)
        cos = (w["w"] * w0).sum(1) / (w["w"].norm(dim=1) * w0.norm(dim=1))
        assert torch.allclose(out["w/angle"], cos.clamp(-1, 1).arccos(), atol=1e-3)
        assert bool((out["w/distance"] > 1e-3).all()) is moved
    sgd = StackedOptimizer([OptimizerSpec(name="sgd")], {"w": w0[:1].clone()})
    assert decayed_init(Observation(1, {"w": w0[:1]}, NO_EVAL, {"w": w0[:1]}, optimizer=sgd)) == {}


def test_decayed_init_of_a_scalar_per_run():
    from optlab.probes.optimizer import decayed_init

    s0 = torch.tensor([2.0, -1.0])  # (R,): one scalar per run, as the ladder's offset
    s = {"offset": s0.clone()}
    opt = StackedOptimizer([OptimizerSpec(name="adamw", lr=0.1, weight_decay=0.5)] * 2, s)
    opt.step([torch.zeros(2)])
    out = decayed_init(Observation(1, s, NO_EVAL, {"offset": s0}, optimizer=opt))
    assert torch.allclose(out["offset/distance"], torch.zeros(2), atol=1e-7)
    assert torch.allclose(out["offset/angle"], torch.zeros(2), atol=1e-3)
