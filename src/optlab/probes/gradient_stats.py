"""Statistics of per-example gradients, and how Adam's moments match them: pure functions.

From per-example gradients G (R, B, d) of one tensor or of all parameters flattened, with
ḡ the batch's mean gradient and Σ the examples' covariance (unbiased, over the B
examples; only its diagonal Σ_ii enters here, through tr Σ and Σ/B):

- ``mean_sq`` ‖ḡ‖² and ``trace_var`` tr Σ;
- ``noise_scale`` B_simple = tr Σ / ‖ḡ‖², the batch size past which a larger batch stops
  paying (McCandlish et al. 2018, "An empirical model of large-batch training");
- ``snr`` ‖ḡ‖² / (tr Σ/B), the mean gradient's signal against the noise of a batch of B;
- ``kl_adam`` and ``kl_adam_reverse``, KL between the minibatch gradient's Gaussian
  N(ḡ, diag(Σ/B)) and the one Adam's bias-corrected moments imply, N(m̂, diag(v̂ − m̂²));
- ``v_hat_tracks``, the mean of (v̂ − m̂²)/(Σ/B): whether v̂ − m̂² estimates the
  gradient's variance, as Balles and Hennig (2018) read Adam.

Each returns one value per run, (R,). A coordinate where v̂ − m̂² ≤ 0 or Σ_ii = 0 has no
Gaussian: the KLs count it (``kl_invalid_share``) and floor its variance at the dtype's
smallest normal number (``torch.finfo(dtype).tiny``), so one such coordinate makes the KL
large instead of inf or nan; ``v_hat_tracks`` leaves it out.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def flatten(tensors: Mapping[str, Tensor] | Tensor, lead: int) -> Tensor:
    """One tensor or a dict of them, each with ``lead`` leading axes kept ((R, B) for
    per-example gradients, (R,) for m̂ and v̂), as (*lead, d), all entries concatenated."""
    if isinstance(tensors, Tensor):
        return tensors.reshape(*tensors.shape[:lead], -1)
    return torch.cat([flatten(t, lead) for t in tensors.values()], dim=-1)


def mean_sq(G: Tensor) -> Tensor:
    """‖ḡ‖², the squared norm of the batch's mean gradient, from G (R, B, d)."""
    return G.mean(1).pow(2).sum(-1)


def trace_var(G: Tensor) -> Tensor:
    """tr Σ = Σ_i Var_b(G_bi), the examples' covariance unbiased over the B examples."""
    return G.var(1, correction=1).sum(-1)


def noise_scale(G: Tensor) -> Tensor:
    """B_simple = tr Σ / ‖ḡ‖² (McCandlish et al. 2018)."""
    return trace_var(G) / mean_sq(G)


def snr(G: Tensor) -> Tensor:
    """‖ḡ‖² / (tr Σ/B): the batch's mean gradient against the variance of that mean."""
    return mean_sq(G) / (trace_var(G) / G.shape[1])


def _gaussians(G: Tensor, m_hat: Tensor, v_hat: Tensor) -> tuple[Tensor, ...]:
    """μ1 = ḡ, σ1² = Σ_ii/B; μ2 = m̂, σ2² = v̂ − m̂²; and which coordinates have a variance
    ≤ 0 (both variances floored at the dtype's tiny)."""
    mu1, var1 = G.mean(1), G.var(1, correction=1) / G.shape[1]
    mu2, var2 = m_hat, v_hat - m_hat.pow(2)
    invalid = (var1 <= 0) | (var2 <= 0)
    tiny = torch.finfo(G.dtype).tiny
    return mu1, var1.clamp_min(tiny), mu2, var2.clamp_min(tiny), invalid


def _kl(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor) -> Tensor:
    """KL(N(μ1, diag σ1²) ‖ N(μ2, diag σ2²)) = ½ Σ_i [σ1²/σ2² + (μ2 − μ1)²/σ2² − 1 + ln(σ2²/σ1²)]."""
    return 0.5 * (var1 / var2 + (mu2 - mu1).pow(2) / var2 - 1 + (var2 / var1).log()).sum(-1)


def kl_adam(G: Tensor, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(ḡ, diag(Σ/B)) ‖ N(m̂, diag(v̂ − m̂²))): G (R, B, d), m̂ and v̂ (R, d)."""
    mu1, var1, mu2, var2, _ = _gaussians(G, m_hat, v_hat)
    return _kl(mu1, var1, mu2, var2)


def kl_adam_reverse(G: Tensor, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(m̂, diag(v̂ − m̂²)) ‖ N(ḡ, diag(Σ/B))), the other direction of ``kl_adam``."""
    mu1, var1, mu2, var2, _ = _gaussians(G, m_hat, v_hat)
    return _kl(mu2, var2, mu1, var1)


def kl_invalid_share(G: Tensor, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The share of coordinates where v̂ − m̂² ≤ 0 or Σ_ii = 0, whose variance the KLs floor."""
    return _gaussians(G, m_hat, v_hat)[-1].to(G.dtype).mean(-1)


def v_hat_tracks(G: Tensor, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The mean over coordinates of (v̂ − m̂²)/(Σ_ii/B), 1 where Adam's second moment less
    the squared first tracks the minibatch gradient's variance (Balles and Hennig 2018).
    Coordinates either variance of is ≤ 0 are left out; nan if none is left."""
    _, var1, _, var2, invalid = _gaussians(G, m_hat, v_hat)
    ratio = (var2 / var1).masked_fill(invalid, 0.0)
    return ratio.sum(-1) / (~invalid).sum(-1)
