"""signSGD and Signum against the Adam rule's sign limit and hand-computed momentum."""

import torch

from optlab.optim import rules, sign


def _grads(steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 6, generator=g, dtype=torch.float64) for _ in range(steps)]


def test_signsgd_is_adam_with_zero_betas_and_eps():
    """β1 = β2 = 0, ε = 0: m̂/√v̂ = g/|g| = sign g (gradients never exactly 0 here)."""
    p, q = torch.ones(1, 6, dtype=torch.float64), torch.ones(1, 6, dtype=torch.float64)
    state = rules.adam_init(q)
    for t, g in enumerate(_grads(30), 1):
        p, _ = sign.signsgd(p, g, {}, t, lr=0.01, weight_decay=0.1)
        q, state = rules.adamw(
            q, g, state, t, lr=0.01, beta1=0.0, beta2=0.0, eps=0.0, weight_decay=0.1
        )
    assert torch.allclose(p, q, rtol=1e-14)


def test_signum_follows_the_sign_of_its_momentum():
    grads = _grads(40)
    p, state, m = torch.zeros(1, 6, dtype=torch.float64), sign.signum_init(grads[0]), 0.0
    expected = torch.zeros(1, 6, dtype=torch.float64)
    for t, g in enumerate(grads, 1):
        p, state = sign.signum(p, g, state, t, lr=0.1, beta1=0.9, weight_decay=0.0)
        m = 0.9 * m + 0.1 * g
        expected = expected - 0.1 * m.sign()
    assert torch.equal(p, expected)
    # β1 = 0 is signSGD
    a, b, s = torch.zeros(1, 6), torch.zeros(1, 6), sign.signum_init(torch.zeros(1, 6))
    for t, g in enumerate(grads, 1):
        a, s = sign.signum(a, g.float(), s, t, lr=0.1, beta1=0.0, weight_decay=0.0)
        b, _ = sign.signsgd(b, g.float(), {}, t, lr=0.1, weight_decay=0.0)
    assert torch.equal(a, b)
