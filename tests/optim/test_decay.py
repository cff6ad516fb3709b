"""The stateful decay variants (the AdamWAnalysis README, next steps): limits and hand-computed values."""

import pytest
import torch

from optlab.optim import decay

THETA = torch.tensor([[2.0, -1.0, 0.5, 4.0]], dtype=torch.float64)
GRAD = torch.tensor([[1.0, 3.0, -1.0, 3.0]], dtype=torch.float64)  # mean |g| = 2


def test_grad_scaled_by_hand_and_its_l2_limit():
    """β = 0: ḡ = |g| = (1, 3, 1, 3), r = (½, 3/2, ½, 3/2); γ = 1: λ_t = λ·2/(1 + r)."""
    out, state = decay.grad_scaled(THETA, GRAD, {}, 0.1, 0.5, decay_beta=0.0, decay_strength=1.0)
    lam = 0.5 * torch.tensor([[4 / 3, 0.8, 4 / 3, 0.8]], dtype=torch.float64)
    assert torch.allclose(out, THETA - 0.1 * lam * THETA)
    assert torch.equal(state["grad_abs_avg"], GRAD.abs())
    plain, _ = decay.grad_scaled(THETA, GRAD, {}, 0.1, 0.5, decay_beta=0.9, decay_strength=0.0)
    assert torch.allclose(plain, decay.l2(THETA, 0.1, 0.5))


def test_grad_scaled_is_scale_free():
    """r is relative to the tensor's mean, so scaling every gradient by 100 changes nothing."""
    a, _ = decay.grad_scaled(THETA, GRAD, {}, 0.1, 0.5, decay_beta=0.5, decay_strength=3.0)
    b, _ = decay.grad_scaled(THETA, 100 * GRAD, {}, 0.1, 0.5, decay_beta=0.5, decay_strength=3.0)
    assert torch.allclose(a, b, rtol=1e-14)


def _gens(seed=0):
    return [torch.Generator().manual_seed(seed)]


def test_dropout_limits_and_fraction():
    for p, expected in ((1.0, decay.l2(THETA, 0.1, 0.5)), (0.0, THETA)):
        out, _ = decay.dropout(THETA, GRAD, {}, 0.1, 0.5, decay_p=p, generators=_gens())
        assert torch.allclose(out, expected)
    big = torch.ones(1, 20_000, dtype=torch.float64)
    out, _ = decay.dropout(big, big, {}, 0.1, 1.0, decay_p=0.3, generators=_gens())
    decayed = (out < 1).double().mean().item()
    assert decayed == pytest.approx(0.3, abs=0.015)  # binomial sd ≈ 0.003
    assert set(out.unique().tolist()) == {0.9, 1.0}  # decayed coordinates lose exactly ηλθ


def test_dropout_masks_come_from_each_runs_generator():
    """Two runs stacked draw what each would draw alone."""
    theta = torch.ones(2, 50, dtype=torch.float64)
    both, _ = decay.dropout(theta, theta, {}, 0.1, 1.0, decay_p=0.5, generators=_gens(1) + _gens(2))
    for r, seed in enumerate((1, 2)):
        alone, _ = decay.dropout(
            theta[r : r + 1], theta[r : r + 1], {}, 0.1, 1.0, decay_p=0.5, generators=_gens(seed)
        )
        assert torch.equal(both[r : r + 1], alone)
    assert not torch.equal(both[0], both[1])
    with pytest.raises(ValueError, match="generator"):
        decay.dropout(theta, theta, {}, 0.1, 1.0, decay_p=0.5)


def test_sign_ema_spares_a_weight_that_flips():
    """β = ½, ηλ = 0.02, θ_0 = (0.01, 1): step 1 pulls both (s̄_1 = (1, 1)) and the first
    crosses zero; step 2 has s̄_2 = ½(1, 1) + ½(−1, 1) = (0, 1): the flipped weight is left alone."""
    theta = torch.tensor([[0.01, 1.0]], dtype=torch.float64)
    state = {}
    theta, state = decay.sign_ema(theta, theta, state, 0.1, 0.2, decay_beta=0.5)
    assert torch.allclose(theta, torch.tensor([[-0.01, 0.98]], dtype=torch.float64))
    theta, state = decay.sign_ema(theta, theta, state, 0.1, 0.2, decay_beta=0.5)
    assert torch.allclose(theta, torch.tensor([[-0.01, 0.96]], dtype=torch.float64))
    assert torch.equal(state["sign_avg"], torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    l1, _ = decay.sign_ema(THETA, GRAD, {}, 0.1, 0.5, decay_beta=0.0)
    assert torch.allclose(l1, decay.l1(THETA, 0.1, 0.5))  # β = 0 is plain L1
