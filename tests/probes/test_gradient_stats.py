"""Per-example gradient statistics against closed forms: a Gaussian KL by hand, and a
linear regression whose gradient covariance is known."""

import math

import numpy as np
import pytest
import torch

from optlab.probes.gradient_stats import (
    flatten,
    kl_adam,
    kl_adam_reverse,
    kl_invalid_share,
    mean_sq,
    noise_scale,
    snr,
    trace_var,
    v_hat_tracks,
)


def _moments_matching(G):
    """m̂ = ḡ and v̂ = ḡ² + Σ/B: Adam's moments of the very Gaussian the batch has."""
    m_hat = G.mean(1)
    return m_hat, m_hat.pow(2) + G.var(1) / G.shape[1]


def test_kl_is_zero_for_identical_gaussians():
    G = torch.randn(3, 10, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m_hat, v_hat = _moments_matching(G)
    zero = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(kl_adam(G, m_hat, v_hat), zero)
    torch.testing.assert_close(kl_adam_reverse(G, m_hat, v_hat), zero)
    torch.testing.assert_close(v_hat_tracks(G, m_hat, v_hat), zero + 1)
    torch.testing.assert_close(kl_invalid_share(G, m_hat, v_hat), zero)


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
    torch.testing.assert_close(kl_adam(G, m_hat, v_hat), torch.tensor([forward]).double())
    torch.testing.assert_close(kl_adam_reverse(G, m_hat, v_hat), torch.tensor([reverse]).double())
    # (v̂ − m̂²)/(Σ/B) = (2, ¼)
    torch.testing.assert_close(v_hat_tracks(G, m_hat, v_hat), torch.tensor([1.125]).double())


def test_invalid_coordinates_are_counted_and_left_out():
    # coordinate 0: Σ_00 = 0 (every example agrees); 1: v̂ − m̂² < 0; 2 and 3 valid
    G = torch.tensor([[[1.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 0.0]]], dtype=torch.float64)
    m_hat = torch.tensor([[1.0, 2.0, 2.0, 1.0]], dtype=torch.float64)
    v_hat = torch.tensor([[2.0, 3.0, 5.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(kl_invalid_share(G, m_hat, v_hat), torch.tensor([0.5]).double())
    # the KLs over coordinates 2 and 3 alone: σ1² = σ2² = 1, μ1 = (2, 1), μ2 = (2, 1): 0
    zero = torch.zeros(1, dtype=torch.float64)
    torch.testing.assert_close(kl_adam(G, m_hat, v_hat), zero)
    torch.testing.assert_close(kl_adam_reverse(G, m_hat, v_hat), zero)
    # only coordinates 2 and 3 count: Σ/B = (1, 1), v̂ − m̂² = (1, 1)
    torch.testing.assert_close(v_hat_tracks(G, m_hat, v_hat), torch.tensor([1.0]).double())


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
    torch.testing.assert_close(trace_var(G), torch.full((runs,), 9.0).double(), rtol=0.02, atol=0)
    torch.testing.assert_close(noise_scale(G), torch.full((runs,), 9.0).double(), rtol=0.02, atol=0)
    torch.testing.assert_close(mean_sq(G), torch.ones(runs).double(), rtol=0.02, atol=0)
    torch.testing.assert_close(snr(G), torch.full((runs,), batch / 9).double(), rtol=0.02, atol=0)


def test_flatten_concatenates_tensors_after_the_leading_axes():
    grads = {"w": torch.zeros(2, 3, 4, 5), "b": torch.ones(2, 3, 5)}
    flat = flatten(grads, lead=2)
    assert flat.shape == (2, 3, 25) and flat[..., 20:].eq(1).all()
    assert flatten(torch.zeros(2, 4, 5), lead=1).shape == (2, 20)


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


def test_the_probe_records_nothing_where_examples_mix(tmp_path):
    assert _recorded(tmp_path, {"normalization": "batchnorm"}).empty
