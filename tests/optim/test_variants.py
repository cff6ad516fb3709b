"""Nested moving-average Adam, block-wise second moments and the harmonic step, against hand
loops, closed forms and the Adam rule (float64)."""

import math

import pytest
import torch

from optlab.optim import rules, variants

ADAM = dict(beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0)


def _grads(steps, shape=(1, 4, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(steps)]


def _run(update, init, grads, **hyper):
    p = torch.zeros_like(grads[0])
    state = init(p)
    for t, g in enumerate(grads, 1):
        p, state = update(p, g, state, t, **hyper)
    return p


@pytest.mark.parametrize("correction", ["none", "standard", "exact"])
def test_nested_adam_with_beta1_zero_is_rmsprop_with_bias_corrected_v(correction):
    """β1 = 0: K̂_t = g_t/√(v̂_t + ε) for every bias correction; the reference is a plain loop."""
    grads, lr, beta2, eps = _grads(200), 1e-2, 0.99, 1e-3
    ours = _run(
        variants.nested_adam,
        variants.nested_init,
        grads,
        lr=lr,
        beta1=0.0,
        beta2=beta2,
        eps=eps,
        weight_decay=0.0,
        bias_correction=correction,
    )
    p, v = torch.zeros_like(grads[0]), torch.zeros_like(grads[0])
    for t, g in enumerate(grads, 1):
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr * g / (v / (1 - beta2**t) + eps).sqrt()
    assert torch.allclose(ours, p, rtol=1e-12, atol=1e-15)
    # and, with ε = 0, Adam with β1 = 0 takes the same steps
    adam = _run(rules.adam, rules.adam_init, grads, lr=lr, **{**ADAM, "beta1": 0.0, "eps": 0.0})
    nested = _run(
        variants.nested_adam,
        variants.nested_init,
        grads,
        lr=lr,
        **{**ADAM, "beta1": 0.0, "eps": 0.0},
        bias_correction=correction,
    )
    assert torch.allclose(nested, adam, rtol=1e-12, atol=1e-15)


def test_nested_adam_two_steps_by_hand():
    """β1 = β2 = ½, ε = 0, η = 1, g = 1 then 3 (one coordinate): written out below."""
    hyper = dict(lr=1.0, beta1=0.5, beta2=0.5, eps=0.0, weight_decay=0.0)
    grads = [torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float64)]
    v2_hat = (0.5 * 0.5 + 0.5 * 9) / 0.75  # v̂_1 = 1
    k2 = 0.5 * 0.5 * 1 + 0.5 * 3 / math.sqrt(v2_hat)  # K_1 = ½·1/1
    w2 = 0.5 * 0.5 + 0.5 / math.sqrt(v2_hat)  # W_1 = ½
    expected = {
        "none": -0.5 - k2,
        "standard": -1.0 - k2 / 0.75,
        "exact": -1.0 - k2 / (w2 * math.sqrt(v2_hat)),
    }
    for correction, value in expected.items():
        out = _run(
            variants.nested_adam,
            variants.nested_init,
            grads,
            **hyper,
            bias_correction=correction,
        )
        assert out.item() == pytest.approx(value, rel=1e-14)
    assert expected["exact"] != pytest.approx(expected["standard"], rel=0.1)  # v̂ moved: they differ


def test_nested_adam_exact_equals_standard_while_v_hat_is_constant():
    """|g| fixed per coordinate, signs random: v̂_t = g² at every t, so W_t√(v̂+ε) = 1 − β1^t."""
    signs = [g.sign() for g in _grads(300, seed=4)]
    scale = torch.tensor([[[0.1], [1.0], [5.0], [20.0]]], dtype=torch.float64)
    grads = [s * scale for s in signs]
    kwargs = dict(lr=1e-2, **{**ADAM, "eps": 1e-8})
    standard = _run(variants.nested_adam, variants.nested_init, grads, **kwargs)
    exact = _run(
        variants.nested_adam, variants.nested_init, grads, **kwargs, bias_correction="exact"
    )
    assert torch.allclose(exact, standard, rtol=1e-10, atol=0)


def _blockwise(grads, **kw):
    return _run(variants.blockwise_adam, rules.adam_init, grads, lr=1e-2, **ADAM, **kw)


def test_blockwise_adam_limits_are_adam_and_per_tensor():
    grads = _grads(100, shape=(2, 5, 3))
    adamw = _run(rules.adamw, rules.adam_init, grads, lr=1e-2, **ADAM)
    assert torch.allclose(_blockwise(grads, blocks="block", block_size=1), adamw, rtol=1e-12)
    assert torch.allclose(
        _blockwise(grads, blocks="block", block_size=15),
        _blockwise(grads, blocks="tensor"),
        rtol=1e-12,
    )


def test_block_means_by_hand():
    x = torch.arange(12.0).reshape(1, 2, 6)  # rows [0..5], [6..11]
    assert torch.equal(variants.block_mean(x, "tensor"), torch.full_like(x, 5.5))
    rows = variants.block_mean(x, "row")
    assert torch.equal(rows[0, :, 0], torch.tensor([2.5, 8.5])) and rows.shape == x.shape
    cols = variants.block_mean(x, "column")
    assert torch.equal(cols[0, 0], torch.arange(3.0, 9.0))  # (j + j + 6)/2
    blocks = variants.block_mean(x, "block", block_size=5)  # [0..4], [5..9], [10, 11]
    expected = torch.tensor([2.0] * 5 + [7.0] * 5 + [10.5] * 2).reshape(1, 2, 6)
    assert torch.equal(blocks, expected)


def test_blockwise_adam_per_tensor_first_step_by_hand():
    """t = 1: m̂ = g and v̂ = mean(g²) over the tensor, so the step is η g/√mean(g²)."""
    g = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # mean(g²) = 12.5
    out, _ = variants.blockwise_adam(
        torch.zeros_like(g), g, rules.adam_init(g), 1, lr=0.1, **{**ADAM, "eps": 0.0}
    )
    assert torch.allclose(out, -0.1 * g / math.sqrt(12.5), rtol=1e-14)


def test_harmonic_step_is_the_harmonic_mean_of_adam_step_and_lr():
    """On a fixed gradient sequence Adam's moments do not depend on θ, so Adam at η = 1 gives
    a_t; the harmonic rule must move by η a_t/(η + |a_t|) at every step."""
    grads, lr = _grads(50), 0.05
    p, s_adam = torch.zeros_like(grads[0]), rules.adam_init(grads[0])
    q, s_harm = torch.zeros_like(grads[0]), rules.adam_init(grads[0])
    for t, g in enumerate(grads, 1):
        moved, s_adam = rules.adam(p, g, s_adam, t, lr=1.0, **ADAM)
        a = p - moved
        new_q, s_harm = variants.harmonic_adam(q, g, s_harm, t, lr=lr, **ADAM)
        assert torch.allclose(q - new_q, lr * a / (lr + a.abs()), rtol=1e-12)
        q = new_q
    first, _ = variants.harmonic_adam(
        torch.zeros(1, 2, dtype=torch.float64),
        torch.tensor([[2.0, -0.5]], dtype=torch.float64),
        rules.adam_init(torch.zeros(1, 2)),
        1,
        lr=0.5,
        **{**ADAM, "eps": 0.0},
    )
    # t = 1: a = sign g, so the step is 1/(1/1 + 1/0.5) = 1/3 against the gradient's sign
    assert torch.allclose(first, torch.tensor([[-1 / 3, 1 / 3]], dtype=torch.float64))
