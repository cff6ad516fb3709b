"""Per-example gradient statistics against closed forms: a Gaussian KL by hand, a linear
regression whose gradient covariance is known, the two-batch estimator and the step's cosine
by hand, and the essay's toy through the engine."""

import math

import numpy as np
import pytest
import torch

from optlab.probes.gradient_stats import (
    Spread,
    cos_update_grad,
    grad_stats,
    kl_adam,
    kl_adam_reverse,
    kl_invalid_share,
    mean_sq,
    noise_scale,
    noise_scale_2b,
    snr,
    trace_var,
    v_hat_tracks,
)


def _moments_matching(G, batch):
    """m̂ = ḡ and v̂ = ḡ² + Σ/B: Adam's moments of the very Gaussian a batch of B has."""
    m_hat = G.mean(1)
    return m_hat, m_hat.pow(2) + G.var(1) / batch


def test_kl_is_zero_for_identical_gaussians():
    G = torch.randn(3, 10, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = torch.tensor([4.0, 32.0, 1024.0], dtype=torch.float64)  # each run its own B
    m_hat, v_hat = _moments_matching(G, batch[:, None])
    zero = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(kl_adam(Spread.of(G), batch, m_hat, v_hat), zero)
    torch.testing.assert_close(kl_adam_reverse(Spread.of(G), batch, m_hat, v_hat), zero)
    torch.testing.assert_close(v_hat_tracks(Spread.of(G), batch, m_hat, v_hat), zero + 1)
    torch.testing.assert_close(kl_invalid_share(Spread.of(G), batch, m_hat, v_hat), zero)
    # the same moments read against a batch 4× larger: Σ/B is a quarter of v̂ − m̂²
    torch.testing.assert_close(v_hat_tracks(Spread.of(G), 4 * batch, m_hat, v_hat), zero + 4)


def test_kl_equals_a_hand_computed_2d_case():
    # B = 2 examples per coordinate: ḡ = (1, 0), Σ_ii = (2, 8) (unbiased), so Σ/B = (1, 4)
    G = torch.tensor([[[0.0, -2.0], [2.0, 2.0]]], dtype=torch.float64)
    # Adam: m̂ = (2, 1), v̂ − m̂² = (2, 1)
    m_hat = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    v_hat = torch.tensor([[6.0, 2.0]], dtype=torch.float64)
    # ½[(1/2 + 1/2 − 1 + ln 2) + (4 + 1 − 1 + ln ¼)]
    forward = 0.5 * (math.log(2) + 4 + math.log(0.25))
    # ½[(2 + 1 − 1 + ln ½) + (¼ + ¼ − 1 + ln 4)]
    reverse = 0.5 * (2 + math.log(0.5) - 0.5 + math.log(4))
    torch.testing.assert_close(
        kl_adam(Spread.of(G), 2, m_hat, v_hat), torch.tensor([forward]).double()
    )
    torch.testing.assert_close(
        kl_adam_reverse(Spread.of(G), 2, m_hat, v_hat), torch.tensor([reverse]).double()
    )
    # (v̂ − m̂²)/(Σ/B) = (2, ¼): geometric mean √(2·¼) = 1/√2
    torch.testing.assert_close(
        v_hat_tracks(Spread.of(G), 2, m_hat, v_hat), torch.tensor([0.5**0.5]).double()
    )


def test_invalid_coordinates_are_counted_and_left_out():
    # coordinate 0: Σ_00 = 0 (every example agrees); 1: v̂ − m̂² < 0; 2 and 3 valid
    G = torch.tensor([[[1.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 0.0]]], dtype=torch.float64)
    m_hat = torch.tensor([[1.0, 2.0, 2.0, 1.0]], dtype=torch.float64)
    v_hat = torch.tensor([[2.0, 3.0, 5.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(
        kl_invalid_share(Spread.of(G), 2, m_hat, v_hat), torch.tensor([0.5]).double()
    )
    # the KLs over coordinates 2 and 3 alone: σ1² = σ2² = 1, μ1 = (2, 1), μ2 = (2, 1): 0
    zero = torch.zeros(1, dtype=torch.float64)
    torch.testing.assert_close(kl_adam(Spread.of(G), 2, m_hat, v_hat), zero)
    torch.testing.assert_close(kl_adam_reverse(Spread.of(G), 2, m_hat, v_hat), zero)
    # only coordinates 2 and 3 count: Σ/B = (1, 1), v̂ − m̂² = (1, 1)
    torch.testing.assert_close(
        v_hat_tracks(Spread.of(G), 2, m_hat, v_hat), torch.tensor([1.0]).double()
    )


def test_linear_regression_noise_matches_closed_form():
    """½(wᵀx − y)² with y = w*ᵀx + ε, x ~ N(0, I_d), ε ~ N(0, s²), at δ = w − w*: the
    gradient g = (δᵀx − ε)x has mean δ and covariance Σ = (‖δ‖² + s²)I + δδᵀ (Isserlis), so
    tr Σ = d(‖δ‖² + s²) + ‖δ‖² = 4·2 + 1 = 9 and B_simple = tr Σ/‖δ‖² = 9."""
    gen = torch.Generator().manual_seed(0)
    d, batch, runs = 4, 400_000, 2
    delta = torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    x = torch.randn(runs, batch, d, generator=gen, dtype=torch.float64)
    eps = torch.randn(runs, batch, generator=gen, dtype=torch.float64)
    G = (x @ delta - eps)[..., None] * x
    torch.testing.assert_close(
        trace_var(Spread.of(G)), torch.full((runs,), 9.0).double(), rtol=0.02, atol=0
    )
    torch.testing.assert_close(
        noise_scale(Spread.of(G)), torch.full((runs,), 9.0).double(), rtol=0.02, atol=0
    )
    torch.testing.assert_close(mean_sq(Spread.of(G)), torch.ones(runs).double(), rtol=0.02, atol=0)
    torch.testing.assert_close(
        snr(Spread.of(G), 32), torch.full((runs,), 32 / 9).double(), rtol=0.02, atol=0
    )
    # the two-batch estimator: S and |G|² unbiased, so within 2% of 9 as well
    torch.testing.assert_close(
        noise_scale_2b(Spread.of(G)), torch.full((runs,), 9.0).double(), rtol=0.02, atol=0
    )


def test_two_batch_noise_scale_by_hand():
    """G = (1, 3, 5, 7), N = 4, the examples one at a time as the small batches and all four
    as the big (McCandlish et al. 2018, App. A): |G_small|² = (1 + 9 + 25 + 49)/4 = 21,
    |G_big|² = 4² = 16, so |G|² = (4·16 − 21)/3 = 43/3 and S = (21 − 16)/(1 − ¼) = 20/3 (the
    unbiased variance): B_simple = 20/43; the plain estimate is 20/3 over 16 = 5/12."""
    s = Spread.of(torch.tensor([[[1.0], [3.0], [5.0], [7.0]]], dtype=torch.float64))
    torch.testing.assert_close(noise_scale_2b(s), torch.tensor([20 / 43]).double())
    torch.testing.assert_close(trace_var(s), torch.tensor([20 / 3]).double())
    torch.testing.assert_close(noise_scale(s), torch.tensor([5 / 12]).double())


def test_cos_update_grad_by_hand():
    """ḡ = (3, 4) (the mean of (2, 4) and (4, 4)); Δθ = (−4, −3): ⟨Δθ, −ḡ⟩ = 24 over 5·5."""
    G = torch.tensor([[[2.0, 4.0], [4.0, 4.0]]], dtype=torch.float64)
    delta = torch.tensor([[-4.0, -3.0]], dtype=torch.float64)
    torch.testing.assert_close(cos_update_grad(Spread.of(G), delta), torch.tensor([0.96]).double())
    torch.testing.assert_close(
        cos_update_grad(Spread.of(G), -0.1 * G.mean(1)), torch.ones(1).double()
    )


def test_spread_joins_tensors_as_one_vector():
    """Two tensors' examples: (R, N, 2, 3) and (R, N, 3); the joined spread is their 9
    coordinates', and a per-coordinate sum over it is the sum of the parts'."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 5, 2, 3, generator=gen), torch.randn(2, 5, 3, generator=gen)
    whole = Spread.join([Spread.of(a), Spread.of(b)])
    assert whole.mean.shape == whole.var.shape == (2, 9) and whole.n == 5
    joined = torch.cat([a.reshape(2, 5, 6), b], dim=-1).double()
    torch.testing.assert_close(whole.var, joined.var(1))
    torch.testing.assert_close(trace_var(whole), trace_var(Spread.of(a)) + trace_var(Spread.of(b)))


def test_the_probe_equals_the_pure_statistics_per_tensor_and_over_all():
    """One pass over all coordinates, summed per tensor, against each statistic computed on
    each tensor's own spread and on the joined one; v̂ − m̂² ≤ 0 in some coordinates."""
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(3)
    runs, shapes = 2, {"w": (4, 3), "b": (3,), "s": ()}
    spreads = {
        k: Spread.of(torch.randn(runs, 16, *shape, generator=gen).double())
        for k, shape in shapes.items()
    }
    m = {k: s.mean + 0.1 * torch.randn(s.mean.shape, generator=gen) for k, s in spreads.items()}
    v = {
        k: (m[k].pow(2) + s.var * torch.rand(s.var.shape, generator=gen) - 0.2).clamp_min(1e-3)
        for k, s in spreads.items()
    }
    step = {k: torch.randn(runs, *shape, generator=gen).double() for k, shape in shapes.items()}
    batch = torch.tensor([8.0, 32.0])
    obs = SimpleNamespace(
        per_sample=lambda: spreads, batch=batch, update=SimpleNamespace(delta=step), optimizer=None
    )
    import optlab.probes.gradient_stats as module

    original = module.adam_moments
    module.adam_moments = lambda _: {k: (m[k], v[k]) for k in shapes}
    try:
        got = grad_stats(obs)
    finally:
        module.adam_moments = original
    parts = {f"{k}/": (s, m[k], v[k], step[k].reshape(runs, -1)) for k, s in spreads.items()}
    joined = Spread.join(list(spreads.values()))
    cat = lambda d: torch.cat([d[k].reshape(runs, -1) for k in shapes], -1)  # noqa: E731
    parts[""] = (joined, cat(m), cat(v), cat(step))
    for prefix, (s, m_hat, v_hat, delta) in parts.items():
        want = {
            "mean_sq": mean_sq(s),
            "trace_var": trace_var(s),
            "noise_scale": noise_scale(s),
            "noise_scale_2b": noise_scale_2b(s),
            "snr": snr(s, batch.double()),
            "cos_update_grad": cos_update_grad(s, delta),
            "kl_adam": kl_adam(s, batch.double(), m_hat, v_hat),
            "kl_adam_reverse": kl_adam_reverse(s, batch.double(), m_hat, v_hat),
            "kl_invalid_share": kl_invalid_share(s, batch.double(), m_hat, v_hat),
            "v_hat_tracks": v_hat_tracks(s, batch.double(), m_hat, v_hat),
            "sqrt_v_norm": v_hat.sqrt().norm(dim=-1),
            "sqrt_v_min": v_hat.sqrt().amin(-1),
            "sqrt_v_max": v_hat.sqrt().amax(-1),
        }
        for name, value in want.items():
            torch.testing.assert_close(got[f"{prefix}{name}"], value, msg=f"{prefix}{name}")
    assert 0 < got["kl_invalid_share"].min() < 1  # some coordinates were left out


def _recorded(tmp_path, kwargs: dict):
    """grad_stats of a digits MLP under AdamW, recorded every 10 steps: one run's rows."""
    from optlab.config import RunSpec
    from optlab.engine.train import train_group
    from optlab.store import Store

    spec = RunSpec.model_validate(
        {
            "task": {"name": "digits"},
            "model": {"name": "mlp", "kwargs": {"depth": 1, "width": 16, **kwargs}},
            "optimizer": {"name": "adamw", "lr": 1e-3},
            "train": {"steps": 20, "batch_size": 32, "eval_every": 10},
            "probes": {"record": ["grad_stats"]},
        }
    )
    store = Store(tmp_path / "s.db")
    train_group([spec], store)
    m = store.metrics([spec.run_id], split="grad_stats")
    return m.set_index(["name", "step"])["value"]


def test_the_probe_records_whole_model_figures_consistent_with_each_tensors(tmp_path):
    """The store keeps float32 values: sums agree to 1e-6."""
    m = _recorded(tmp_path, {})
    tensors = ("0.weight", "0.bias", "2.weight", "2.bias")
    for step in (0, 10, 20):
        whole = sum(m[f"{t}/trace_var", step] for t in tensors)
        assert m["trace_var", step] == pytest.approx(whole, rel=1e-6)
        assert m["mean_sq", step] == pytest.approx(
            sum(m[f"{t}/mean_sq", step] for t in tensors), rel=1e-6
        )
        ratio = m["trace_var", step] / m["mean_sq", step]
        assert m["noise_scale", step] == pytest.approx(ratio, rel=1e-6)
    assert ("kl_adam", 0) not in m.index  # Adam's moments exist from the first step on
    for step in (10, 20):
        assert np.isfinite(m["kl_adam", step]) and 0 < m["kl_invalid_share", step] < 1


def test_the_probe_is_refused_in_one_line_where_examples_mix(tmp_path):
    from optlab.config import RunSpec
    from optlab.engine.train import check_buildable

    with pytest.raises(ValueError, match="^probes.record: grad_stats needs per-example") as err:
        _recorded(tmp_path, {"normalization": "batchnorm"})
    assert "\n" not in str(err.value)
    spec = RunSpec.model_validate(
        {
            "task": {"name": "digits"},
            "model": {"name": "mlp", "kwargs": {"normalization": "batchnorm"}},
            "probes": {"record": ["grad_stats"]},
        }
    )
    with pytest.raises(ValueError, match="BatchNorm does not define"):
        check_buildable([spec])  # before a sweep writes anything


def _toy(tmp_path, optimizer: dict, **probes):
    """The essay's toy (100 examples [e_i, 1] → 1, w from 0, ½·squared error) under full
    batches, 10 steps, evaluated every 5: each run's grad_stats rows by (name, step), and the
    steps each split was recorded at."""
    from optlab.config import RunSpec
    from optlab.engine.train import train_group
    from optlab.store import Store

    spec = RunSpec.model_validate(
        {
            "task": {"name": "mg_toy", "samples": 100},
            "model": {"name": "linear"},
            "optimizer": optimizer,
            "train": {"steps": 10, "batch_size": 100, "eval_every": 5, "dtype": "float64"},
            "probes": {"record": ["params", "grad_stats"], **probes},
        }
    )
    store = Store(tmp_path / "toy.db")
    train_group([spec, spec.with_train(seed=1)], store)
    m = store.metrics([spec.run_id])
    steps = {split: sorted(m.loc[m["split"] == split, "step"].unique()) for split in m["split"]}
    return m[m["split"] == "grad_stats"].set_index(["name", "step"])["value"], steps


def test_the_toy_at_its_start_has_the_closed_form_noise(tmp_path):
    """At w = 0 example i's gradient is −x_i = −(e_i, 1): ḡ = −(1/n, …, 1/n, 1), ‖ḡ‖² =
    1 + 1/n = 1.01; each of the first n coordinates is 1 on one example of n, unbiased variance
    1/n, the last is constant: tr Σ = 1. So B_simple = 1/1.01, the two-batch one
    1/(1.01 − 1/100) = 1, and at the training batch B = 100, snr = 1.01/(1/100) = 101."""
    m, _ = _toy(tmp_path, {"name": "sgd", "lr": 0.5, "weight_decay": 0.0})
    assert m["mean_sq", 0] == pytest.approx(1.01, rel=1e-6)
    assert m["trace_var", 0] == pytest.approx(1.0, rel=1e-6)
    assert m["noise_scale", 0] == pytest.approx(1 / 1.01, rel=1e-6)
    assert m["noise_scale_2b", 0] == pytest.approx(1.0, rel=1e-6)
    assert m["snr", 0] == pytest.approx(101.0, rel=1e-6)


def test_plain_sgd_steps_exactly_along_the_mean_gradient(tmp_path):
    """Full-batch SGD without momentum or decay: Δθ = −η·ḡ(θ_{t−1}), and the probe reads the
    per-example gradients at θ_{t−1}, the weights the step read: cos = 1 at every step."""
    m, _ = _toy(tmp_path, {"name": "sgd", "lr": 0.5, "weight_decay": 0.0}, grad_every=1)
    cos = m.xs("cos_update_grad")
    assert list(cos.index) == list(range(1, 11))  # after each step, not at step 0
    np.testing.assert_allclose(cos.to_numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(m.xs("w/cos_update_grad").to_numpy(), 1.0, atol=1e-6)


def test_grad_stats_follow_their_own_cadence(tmp_path):
    # grad_stats every 3 steps of 10 (and at the last); the params probe at the evals (every 5)
    _, steps = _toy(tmp_path, {"name": "adam", "lr": 1e-2}, grad_every=3)
    assert steps["grad_stats"] == [0, 3, 6, 9, 10]
    assert steps["params"] == [0, 5, 10]
    _, steps = _toy(tmp_path / "default", {"name": "adam", "lr": 1e-2})
    assert steps["grad_stats"] == steps["params"] == [0, 5, 10]


def test_grad_every_without_grad_stats_is_refused():
    from optlab.config import ProbeSpec

    with pytest.raises(ValueError, match="only the grad_stats probe reads it"):
        ProbeSpec(record=("params",), grad_every=5)
