"""K-FAC's core against dense matrices (float64): the step is (Â_d⁻¹ ⊗ Ĝ_d⁻¹) vec ∇, one linear
layer's Â ⊗ Ĝ is its exact Gauss-Newton matrix, the Jacobian identity of Zhang et al. (2019)
holds exactly for a whitened deep linear net, and the running averages, damping, decay and
momentum follow their equations by hand."""

import pytest
import torch
from torch.func import hessian, jacrev

from optlab.optim import kfac

D = torch.float64


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _vec(m: torch.Tensor) -> torch.Tensor:
    """Column-major vec of each run's matrix: (R, out, in) → (R, out·in)."""
    return m.mT.reshape(m.shape[0], -1)


def _output_grads(losses: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each layer's g: the K passes' gradients of ``losses`` (K, R) w.r.t. its outputs, stacked
    along the example axis (R, K·N, d_out)."""
    passes = [torch.autograd.grad(row.sum(), outputs, retain_graph=True) for row in losses]
    return [torch.cat([p[i] for p in passes], dim=1) for i in range(len(outputs))]


# ---- a 3→4→2 MLP with biases, two runs with their own weights ---------------------------------

N, R = 7, 2


def _mlp():
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn(R, 4, 3, generator=g, dtype=D),
        torch.randn(R, 4, generator=g, dtype=D),
        torch.randn(R, 2, 4, generator=g, dtype=D),
        torch.randn(R, 2, generator=g, dtype=D),
    ]
    x = torch.randn(N, 3, generator=g, dtype=D)
    y = torch.randint(0, 2, (1, N), generator=g)
    return [p.requires_grad_() for p in params], x, y


def _forward(params, x):
    W1, b1, W2, b2 = params
    s1 = x @ W1.mT + b1[:, None]
    h = torch.tanh(s1)
    s2 = h @ W2.mT + b2[:, None]
    return [x.expand(R, N, 3), h], [s1, s2]


def test_gradient_is_the_mean_of_g_times_a_bar():
    """The scaling convention: with g per example (the summed loss's output gradient),
    [∇W ∇b] of the mean loss is E[g āᵀ], ā = [a, 1]."""
    params, x, y = _mlp()
    inputs, outputs = _forward(params, x)
    mean_loss = kfac.curvature_losses(outputs[-1], "empirical", targets=y)[0] / N
    grads = torch.autograd.grad(mean_loss.sum(), params, retain_graph=True)
    gs = _output_grads(kfac.curvature_losses(outputs[-1], "empirical", targets=y), outputs)
    for a, g, gw, gb in zip(inputs, gs, grads[::2], grads[1::2], strict=True):
        a_bar = torch.cat([a, torch.ones(R, N, 1, dtype=D)], dim=-1)
        assert torch.allclose(g.mT @ a_bar / N, torch.cat([gw, gb[..., None]], -1), atol=1e-14)


@pytest.mark.parametrize("curvature", ["fisher", "gauss_newton", "empirical"])
def test_step_equals_the_dense_kronecker_inverse(curvature):
    """Each layer's K-FAC direction is (Â_d⁻¹ ⊗ Ĝ_d⁻¹) vec ∇, the damped factors' Kronecker
    product formed and inverted densely (Â_d = Â + π√γ I, Ĝ_d = Ĝ + (√γ/π) I), to 1e-8; and one
    step with η = 1 and no momentum or decay moves [W b] by exactly that."""
    params, x, y = _mlp()
    inputs, outputs = _forward(params, x)
    losses = kfac.curvature_losses(outputs[-1], curvature, targets=y, generators=_gens(1, 2))
    gs = _output_grads(losses, outputs)
    grads = torch.autograd.grad(
        kfac.curvature_losses(outputs[-1], "empirical", targets=y)[0].sum() / N, params
    )
    gamma = torch.tensor([1e-2, 3e-1], dtype=D)
    for layer, (a, g) in enumerate(zip(inputs, gs, strict=True)):
        W, b = params[2 * layer].detach(), params[2 * layer + 1].detach()
        gw, gb = grads[2 * layer], grads[2 * layer + 1]
        A, G = kfac.layer_factors(a.detach(), g)
        state = kfac.refresh_inverses(
            {**kfac.kfac_init(W, b), "A": A, "G": G}, step=1, damping=gamma
        )
        dw, db = kfac.precondition(gw, gb, state["A_inv"], state["G_inv"])
        for r in range(R):
            pi = ((A[r].trace() / A.shape[-1]) / (G[r].trace() / G.shape[-1])).sqrt()
            A_d = A[r] + pi * gamma[r].sqrt() * torch.eye(A.shape[-1], dtype=D)
            G_d = G[r] + gamma[r].sqrt() / pi * torch.eye(G.shape[-1], dtype=D)
            grad = torch.cat([gw[r], gb[r, :, None]], dim=-1)
            dense = torch.linalg.inv(torch.kron(A_d, G_d)) @ grad.mT.reshape(-1)
            assert torch.allclose(_vec(torch.cat([dw, db[..., None]], -1))[r], dense, atol=1e-8)
        new_w, new_b, _ = kfac.kfac(W, b, gw, gb, state, lr=1.0)
        assert torch.allclose(new_w, W - dw, atol=1e-12) and torch.allclose(
            new_b, b - db, atol=1e-12
        )


def test_one_linear_layer_gauss_newton_is_exact():
    """For f = W̄ ā under ½‖f − y‖², gauss_newton gives Ĝ = I and Â ⊗ Ĝ = E[J_θᵀ J_θ], the exact
    Gauss-Newton matrix from jacrev (and, f being linear in θ, the Hessian of the mean loss), to
    1e-10."""
    gen = torch.Generator().manual_seed(5)
    n, d_in, d_out = 6, 4, 3
    W = torch.randn(R, d_out, d_in, generator=gen, dtype=D)
    b = torch.randn(R, d_out, generator=gen, dtype=D)
    x = torch.randn(n, d_in, generator=gen, dtype=D)
    y = torch.randn(1, n, d_out, generator=gen, dtype=D)
    f = (x @ W.mT + b[:, None]).requires_grad_()
    (g,) = _output_grads(kfac.curvature_losses(f, "gauss_newton", loss="half_mse"), [f])
    A, G = kfac.layer_factors(x.expand(R, n, d_in), g)
    assert torch.allclose(G, torch.eye(d_out, dtype=D).expand(R, -1, -1), atol=1e-14)

    def outputs(v):  # column-major vec of [W b] → the layer's outputs (n, d_out)
        Wb = v.reshape(d_in + 1, d_out).T
        return x @ Wb[:, :-1].T + Wb[:, -1]

    for r in range(R):
        v = torch.cat([W[r], b[r, :, None]], -1).T.reshape(-1)
        J = jacrev(outputs)(v).reshape(n * d_out, -1)
        exact = J.T @ J / n
        assert torch.allclose(torch.kron(A[r], G[r]), exact, atol=1e-10)
        loss = lambda v: 0.5 * (outputs(v) - y[0]).pow(2).sum(-1).mean()  # noqa: E731
        assert torch.allclose(hessian(loss)(v), exact, atol=1e-10)


# ---- the pieces by hand ------------------------------------------------------------------------


def test_factor_running_average():
    """The first step takes the batch's factor as is; then decay·old + (1 − decay)·new, per run."""
    old, new = torch.full((2, 2, 2), 4.0, dtype=D), torch.ones(2, 2, 2, dtype=D)
    assert torch.equal(kfac.ema(None, new, 0.9), new)
    assert torch.allclose(kfac.ema(old, new, 0.9), torch.full_like(old, 0.9 * 4 + 0.1))
    per_run = kfac.ema(old, new, torch.tensor([0.5, 0.0], dtype=D))
    assert torch.allclose(per_run[0], torch.full((2, 2), 2.5, dtype=D))
    assert torch.equal(per_run[1], new[1])
    a, g = torch.ones(2, 3, 1, dtype=D), 2 * torch.ones(2, 3, 1, dtype=D)
    state = kfac.update_factors({}, a, g, 0.5)  # ā = (1, 1): Â = all ones; Ĝ = 4
    state = kfac.update_factors(state, 3 * a, g, 0.5)  # Â = [[9, 3], [3, 1]]
    assert torch.allclose(state["A"][0], torch.tensor([[5.0, 2.0], [2.0, 1.0]], dtype=D))
    assert torch.allclose(state["G"], torch.full((2, 1, 1), 4.0, dtype=D))


def test_pi_damping_by_hand():
    """A = [[2, 1], [1, 4]] (mean eigenvalue 3), G = I/3 (1/3): π = 3. γ = 4: A + π√γ I =
    [[8, 1], [1, 10]], inverse [[10, −1], [−1, 8]]/79; G + (√γ/π) I = I."""
    A = torch.tensor([[[2.0, 1.0], [1.0, 4.0]]], dtype=D)
    G = torch.eye(3, dtype=D)[None] / 3
    assert torch.allclose(kfac.pi_scale(A, G), torch.tensor([3.0], dtype=D))
    A_inv, G_inv = kfac.damped_inverses(A, G, 4.0)
    assert torch.allclose(A_inv[0], torch.tensor([[10.0, -1.0], [-1.0, 8.0]], dtype=D) / 79)
    assert torch.allclose(G_inv[0], torch.eye(3, dtype=D))


def test_inverses_refresh_every_k_steps():
    """With ``inverse_every`` = 3, inverses from step 1 serve steps 1–3; step 4 refreshes them."""
    state = {"A": torch.eye(2, dtype=D)[None], "G": torch.eye(1, dtype=D)[None]}
    first = kfac.refresh_inverses(state, 1, 1.0, inverse_every=3)
    assert int(first["inverse_step"]) == 1
    moved = {**first, "A": 2 * first["A"]}
    assert kfac.refresh_inverses(moved, 3, 1.0, inverse_every=3) is moved
    later = kfac.refresh_inverses(moved, 4, 1.0, inverse_every=3)
    assert int(later["inverse_step"]) == 4 and not torch.equal(later["A_inv"], first["A_inv"])


# one run, W (2, 2) with a bias, fixed non-identity inverses
W0 = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]], dtype=D)
B0 = torch.tensor([[1.0, -1.0]], dtype=D)
GW = torch.tensor([[[0.3, 0.1], [-0.2, 0.4]]], dtype=D)
GB = torch.tensor([[0.5, -0.5]], dtype=D)
A_INV = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.5, 1.0]]], dtype=D)
G_INV = torch.tensor([[[1.0, 0.2], [0.2, 3.0]]], dtype=D)
STATE = {**kfac.kfac_init(W0, B0), "A_inv": A_INV, "G_inv": G_INV}


def _cat(w, b):
    return torch.cat([w, b[..., None]], -1)


def test_decoupled_decay_and_l2_differ_as_their_equations_say():
    """η = 0.1, λ = 0.5. Decoupled: θ − ηλθ − η G⁻¹∇A⁻¹. Coupled: θ − η G⁻¹(∇ + λθ)A⁻¹. They
    differ by ηλ(G⁻¹θA⁻¹ − θ), which vanishes where the inverses are I. ``bias_decay`` = 0
    spares b."""
    lr, lam = 0.1, 0.5
    theta, grad = _cat(W0, B0), _cat(GW, GB)
    step = G_INV @ grad @ A_INV
    w, b, _ = kfac.kfac(W0, B0, GW, GB, STATE, lr=lr, weight_decay=lam)
    assert torch.allclose(_cat(w, b), theta - lr * lam * theta - lr * step)
    wc, bc, _ = kfac.kfac(W0, B0, GW, GB, STATE, lr=lr, weight_decay=lam, decay="coupled")
    assert torch.allclose(_cat(wc, bc), theta - lr * G_INV @ (grad + lam * theta) @ A_INV)
    gap = lr * lam * (G_INV @ theta @ A_INV - theta)
    assert torch.allclose(_cat(w, b) - _cat(wc, bc), gap) and gap.abs().max() > 0.1
    eye = {**STATE, "A_inv": torch.eye(3, dtype=D)[None], "G_inv": torch.eye(2, dtype=D)[None]}
    same = [
        kfac.kfac(W0, B0, GW, GB, eye, lr=lr, weight_decay=lam, decay=d)[:2]
        for d in ("l2", "coupled")
    ]
    assert torch.allclose(_cat(*same[0]), _cat(*same[1]))
    _, b_spared, _ = kfac.kfac(W0, B0, GW, GB, STATE, lr=lr, weight_decay=lam, bias_decay=0.0)
    assert torch.allclose(b_spared, B0 - lr * step[..., -1])
    with pytest.raises(ValueError, match="decay"):
        kfac.kfac(W0, B0, GW, GB, STATE, lr=lr, decay="dropout")


def test_momentum_two_steps_by_hand():
    """μ = 0.9, η = 0.1: b_1 = d_1, θ_1 = θ_0 − η d_1; b_2 = μ d_1 + d_2, θ_2 = θ_1 − η b_2, with
    d_t = G⁻¹ ∇_t A⁻¹ and ∇_2 = 2∇_1."""
    d1 = G_INV @ _cat(GW, GB) @ A_INV
    w1, b1, s1 = kfac.kfac(W0, B0, GW, GB, STATE, lr=0.1, momentum=0.9)
    assert torch.allclose(_cat(w1, b1), _cat(W0, B0) - 0.1 * d1)
    w2, b2, s2 = kfac.kfac(w1, b1, 2 * GW, 2 * GB, s1, lr=0.1, momentum=0.9)
    assert torch.allclose(s2["momentum_buffer"], 0.9 * d1 + 2 * d1)
    assert torch.allclose(_cat(w2, b2), _cat(W0, B0) - 0.1 * d1 - 0.1 * 2.9 * d1)


def test_no_bias_layer():
    """Without a bias, ā = a and the step is G⁻¹ ∇W A⁻¹ with b None throughout."""
    state = {**kfac.kfac_init(W0), "A_inv": A_INV[:, :2, :2], "G_inv": G_INV}
    w, b, _ = kfac.kfac(W0, None, GW, None, state, lr=1.0)
    assert b is None and torch.allclose(w, W0 - G_INV @ GW @ A_INV[:, :2, :2])
    A, _ = kfac.layer_factors(
        torch.ones(1, 3, 2, dtype=D), torch.ones(1, 3, 2, dtype=D), bias=False
    )
    assert A.shape == (1, 2, 2)


def test_stacked_runs_are_independent():
    """Two runs stacked, with their own η, μ, γ, EMA decay and sampling generators, step exactly
    as each would alone, over two steps of the whole pipeline (fisher factors sampled)."""
    gen = torch.Generator().manual_seed(9)
    W = torch.randn(R, 3, 4, generator=gen, dtype=D)
    b = torch.randn(R, 3, generator=gen, dtype=D)
    xs = [torch.randn(R, 5, 4, generator=gen, dtype=D) for _ in range(2)]
    hyper = dict(lr=torch.tensor([0.1, 0.3], dtype=D), momentum=torch.tensor([0.9, 0.5], dtype=D))
    damping, decay = torch.tensor([1e-2, 1e-1], dtype=D), torch.tensor([0.95, 0.5], dtype=D)

    def run(W, b, xs, gens, pick):
        state = kfac.kfac_init(W, b)
        for t, x in enumerate(xs, start=1):
            Wg, bg = W.clone().requires_grad_(), b.clone().requires_grad_()
            f = x @ Wg.mT + bg[:, None]
            (g,) = _output_grads(kfac.curvature_losses(f, "fisher", generators=gens), [f])
            gw, gb = torch.autograd.grad(f.pow(2).mean((1, 2)).sum(), [Wg, bg])
            state = kfac.update_factors(state, x, g, decay[pick])
            state = kfac.refresh_inverses(state, t, damping[pick])
            W, b, state = kfac.kfac(
                W, b, gw, gb, state, weight_decay=0.1, **{k: v[pick] for k, v in hyper.items()}
            )
        return W, b

    both = run(W, b, xs, _gens(1, 2), slice(None))
    for r, seed in enumerate((1, 2)):
        one = slice(r, r + 1)
        alone = run(W[one], b[one], [x[one] for x in xs], _gens(seed), one)
        assert torch.allclose(both[0][one], alone[0], rtol=1e-12)
        assert torch.allclose(both[1][one], alone[1], rtol=1e-12)


def test_fisher_samples_the_models_predictive_distribution():
    """Sampled classes follow softmax(f) (20,000 draws, sd ≈ 0.003) and the Gaussian draws have
    E[g gᵀ] = I (the Fisher of ½‖f − y‖² is the Gauss-Newton matrix); errors name the fix."""
    n = 20_000
    logits = torch.tensor([0.0, 1.0, -1.0], dtype=D).expand(1, n, 3)
    f = logits.clone().requires_grad_()
    (g,) = _output_grads(kfac.curvature_losses(f, "fisher", generators=_gens(3)), [f])
    onehot = torch.softmax(logits, -1) - g  # g = p − e_y
    assert torch.allclose(onehot.mean(1)[0], torch.softmax(logits[0, 0], -1), atol=0.015)
    fm = torch.zeros(1, n, 2, dtype=D, requires_grad=True)
    loss = kfac.curvature_losses(fm, "fisher", loss="half_mse", generators=_gens(4))
    (g,) = _output_grads(loss, [fm])
    assert torch.allclose(g[0].T @ g[0] / n, torch.eye(2, dtype=D), atol=0.03)
    with pytest.raises(ValueError, match="Generator"):
        kfac.curvature_losses(f, "fisher")
    with pytest.raises(ValueError, match="true targets"):
        kfac.curvature_losses(f, "empirical")
    with pytest.raises(ValueError, match="curvature"):
        kfac.curvature_losses(f, "hessian")


# ---- mechanism 2 ---------------------------------------------------------------------------------


def _deep_linear(x):
    """Three bias-free linear layers 4 → 5 → 3 → 2 for two runs; their inputs and gauss_newton g."""
    gen = torch.Generator().manual_seed(11)
    shapes = [(5, 4), (3, 5), (2, 3)]
    weights = [torch.randn(R, *s, generator=gen, dtype=D) for s in shapes]
    inputs, outputs, h = [], [], x.expand(R, *x.shape)
    for W in weights:
        inputs.append(h)
        h = (h @ W.mT).requires_grad_()
        outputs.append(h)
    gs = _output_grads(kfac.curvature_losses(outputs[-1], "gauss_newton"), outputs)
    factors = [
        kfac.layer_factors(a.detach(), g, bias=False) for a, g in zip(inputs, gs, strict=True)
    ]
    return weights, factors


def test_jacobian_identity_for_a_whitened_deep_linear_net():
    """wᵀĜw = 3‖W₃W₂W₁‖²_F exactly (3 weight matrices, the paper's L + 1) when E[x xᵀ] = I:
    x = √N Q with Q's columns orthonormal. Unwhitened inputs break it."""
    n = 8
    q, _ = torch.linalg.qr(torch.randn(n, 4, generator=torch.Generator().manual_seed(2), dtype=D))
    x = n**0.5 * q
    assert torch.allclose(x.T @ x / n, torch.eye(4, dtype=D), atol=1e-14)
    weights, factors = _deep_linear(x)
    norm, jac = kfac.gauss_newton_norm(weights, factors), kfac.jacobian_norm_sq(weights)
    assert torch.allclose(norm, 3 * jac, rtol=1e-12)
    weights, factors = _deep_linear(x * torch.tensor([1.0, 2.0, 1.0, 0.5], dtype=D))
    norm, jac = kfac.gauss_newton_norm(weights, factors), kfac.jacobian_norm_sq(weights)
    assert not torch.allclose(norm, 3 * jac, rtol=1e-3)
