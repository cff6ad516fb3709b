"""The notepad's closed form of decayed weights against torch.optim.AdamW's own trajectory."""

import math

import torch

from optlab.optim import angle, decay_products, decayed_weights, distance_from_decayed_init


def test_closed_form_reproduces_a_torch_adamw_trajectory_with_a_schedule():
    """w_K = P_K w_0 − Σ_j η_j Π_{i>j}(1 − λη_i) s_j with s_j = m̂_j/(√v̂_j + ε) read from
    torch's state after each step, under a warmup-then-decay lr (float64, 300 steps)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w0 = w.detach().clone()
    lam, beta1, beta2, eps = 0.3, 0.9, 0.99, 1e-8
    opt = torch.optim.AdamW([w], lr=0.05, betas=(beta1, beta2), eps=eps, weight_decay=lam)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 10) * 0.99**k)
    steps, lrs = [], []
    for t in range(1, 301):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        target = torch.randn(6, 4, generator=gen, dtype=torch.float64)
        ((w - target) ** 2).sum().backward()
        opt.step()
        sched.step()
        st = opt.state[w]
        m_hat = st["exp_avg"] / (1 - beta1**t)
        v_hat = st["exp_avg_sq"] / (1 - beta2**t)
        steps.append(m_hat / (v_hat.sqrt() + eps))
    closed = decayed_weights(w0, steps, lrs, lam)
    assert torch.allclose(closed, w.detach(), rtol=1e-9, atol=1e-12)
    p_k = decay_products(lrs, lam)[-1]
    assert p_k == math.prod(1 - lam * lr for lr in lrs)
    assert 0 < p_k < 0.5  # the decay has shrunk w_0's share substantially


def test_distance_and_angle_by_hand():
    w0 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    assert torch.allclose(angle(w, w0), torch.tensor([math.pi / 2, 0.0]), atol=1e-6)
    dist = distance_from_decayed_init(w, w0, 0.5)  # ‖w − ½w_0‖
    assert torch.allclose(dist, torch.tensor([math.sqrt(0.25 + 4), math.sqrt(2 * 1.5**2)]))
