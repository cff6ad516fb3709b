"""Statistics of per-example gradients, and how Adam's moments match them: pure functions.

From per-example gradients G (R, N, d) of one tensor or of all parameters flattened (the
probe's N fixed examples), with ḡ their mean gradient and Σ the examples' covariance
(unbiased, over the N examples; only its diagonal Σ_ii enters here, through tr Σ and Σ/B),
and B the training batch (the minibatch gradient Adam steps with has covariance Σ/B):

- ``mean_sq`` ‖ḡ‖² and ``trace_var`` tr Σ;
- ``noise_scale`` B_simple = tr Σ / ‖ḡ‖², the batch size past which a larger batch stops
  paying (McCandlish et al. 2018, "An empirical model of large-batch training"), and
  ``noise_scale_2b``, the same from their two-batch estimator (App. A), unbiased in ‖G‖²;
- ``snr`` ‖ḡ‖² / (tr Σ/B), the mean gradient's signal against the noise of a batch of B;
- ``kl_adam`` and ``kl_adam_reverse``, KL between the minibatch gradient's Gaussian
  N(ḡ, diag(Σ/B)) and the one Adam's bias-corrected moments imply, N(m̂, diag(v̂ − m̂²))
  (the 2025 thesis notepad's question);
- ``v_hat_tracks``, the mean of (v̂ − m̂²)/(Σ/B): whether v̂ − m̂² estimates the
  gradient's variance, as Balles and Hennig (2018) read Adam;
- ``cos_update_grad``, cos(Δθ, −ḡ) between the step taken and the mean gradient.

Each returns one value per run, (R,). A coordinate where v̂ − m̂² ≤ 0 or Σ_ii = 0 has no
Gaussian: it is counted (``kl_invalid_share``) and left out of the KLs and ``v_hat_tracks``
(a floor at the dtype's smallest number made the KL infinite: on digits a third of the first
layer's weights see pixels that are 0 in every image, and their gradients are exactly 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from optlab.probes.base import Observation
from optlab.probes.optimizer import adam_moments
from optlab.stacking import flat_runs, per_run


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


def noise_scale_2b(G: Tensor, small: int = 1) -> Tensor:
    """B_simple from McCandlish et al.'s (2018, App. A) two-batch estimator: with ``small``-example
    batches (their squared mean norms averaged over the N // small disjoint ones, |G_s|²) and
    the big batch of all N (|G_N|² = ‖ḡ‖²), the unbiased |G|² = (N|G_N|² − s|G_s|²)/(N − s)
    and S = tr Σ = (|G_s|² − |G_N|²)/(1/s − 1/N), and B_simple = S/|G|². At s = 1, S is
    ``trace_var`` and |G|² = ‖ḡ‖² − tr Σ/N: ``noise_scale`` without the bias of ‖ḡ‖². Where N
    examples do not resolve the mean gradient (‖ḡ‖² ≲ tr Σ/N) it is huge or negative."""
    n = G.shape[1]
    if not 1 <= small < n:
        raise ValueError(f"small: {small} is not allowed; need 1 ≤ small < {n} examples")
    k = n // small
    parts = G[:, : k * small].reshape(G.shape[0], k, small, -1).mean(2)
    small_sq, big_sq = parts.pow(2).sum(-1).mean(1), mean_sq(G)
    g_sq = (n * big_sq - small * small_sq) / (n - small)
    s = (small_sq - big_sq) / (1 / small - 1 / n)
    return s / g_sq


def snr(G: Tensor, batch: Tensor | float) -> Tensor:
    """‖ḡ‖² / (tr Σ/B): the mean gradient against the variance of a batch of B's mean."""
    return mean_sq(G) / (trace_var(G) / batch)


def _gaussians(
    G: Tensor, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor
) -> tuple[Tensor, ...]:
    """μ1 = ḡ, σ1² = Σ_ii/B; μ2 = m̂, σ2² = v̂ − m̂²; and which coordinates have a variance
    ≤ 0 (both variances floored at the dtype's tiny, so the masked terms stay finite)."""
    mu1, var1 = G.mean(1), G.var(1, correction=1) / per_run(batch, 2)
    mu2, var2 = m_hat, v_hat - m_hat.pow(2)
    invalid = (var1 <= 0) | (var2 <= 0)
    tiny = torch.finfo(G.dtype).tiny
    return mu1, var1.clamp_min(tiny), mu2, var2.clamp_min(tiny), invalid


def _kl(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> Tensor:
    """KL(N(μ1, diag σ1²) ‖ N(μ2, diag σ2²)) = ½ Σ_i [σ1²/σ2² + (μ2 − μ1)²/σ2² − 1 + ln(σ2²/σ1²)],
    the sum over the coordinates not ``invalid``."""
    terms = var1 / var2 + (mu2 - mu1).pow(2) / var2 - 1 + (var2 / var1).log()
    return 0.5 * terms.masked_fill(invalid, 0.0).sum(-1)


def kl_adam(G: Tensor, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(ḡ, diag(Σ/B)) ‖ N(m̂, diag(v̂ − m̂²))) over the valid coordinates: G (R, N, d),
    B a number or (R,), m̂ and v̂ (R, d)."""
    mu1, var1, mu2, var2, invalid = _gaussians(G, batch, m_hat, v_hat)
    return _kl(mu1, var1, mu2, var2, invalid)


def kl_adam_reverse(G: Tensor, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(m̂, diag(v̂ − m̂²)) ‖ N(ḡ, diag(Σ/B))), the other direction of ``kl_adam``."""
    mu1, var1, mu2, var2, invalid = _gaussians(G, batch, m_hat, v_hat)
    return _kl(mu2, var2, mu1, var1, invalid)


def kl_invalid_share(G: Tensor, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The share of coordinates where v̂ − m̂² ≤ 0 or Σ_ii = 0, which the KLs leave out."""
    return _gaussians(G, batch, m_hat, v_hat)[-1].to(G.dtype).mean(-1)


def v_hat_tracks(G: Tensor, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The mean over coordinates of (v̂ − m̂²)/(Σ_ii/B), 1 where Adam's second moment less
    the squared first tracks the minibatch gradient's variance (Balles and Hennig 2018).
    Coordinates either variance of is ≤ 0 are left out; nan if none is left."""
    _, var1, _, var2, invalid = _gaussians(G, batch, m_hat, v_hat)
    ratio = (var2 / var1).masked_fill(invalid, 0.0)
    return ratio.sum(-1) / (~invalid).sum(-1)


def cos_update_grad(G: Tensor, delta: Tensor) -> Tensor:
    """cos(Δθ, −ḡ) = −⟨Δθ, ḡ⟩/(‖Δθ‖·‖ḡ‖): the step taken, Δθ (R, d), against the descent
    direction of the examples' mean gradient; 1 for plain SGD on those examples."""
    g = G.mean(1)
    return -(delta * g).sum(-1) / (delta.norm(dim=-1) * g.norm(dim=-1))


def grad_stats(obs: Observation) -> dict[str, Tensor]:
    """The ``grad_stats`` probe: on the engine's fixed examples (``Observation.per_sample``, at
    the weights the last step read) and each run's training batch B (``Observation.batch``),
    per tensor (``<tensor>/…``) and over all parameters (bare names), ``mean_sq``,
    ``trace_var``, ``noise_scale``, ``noise_scale_2b``, ``snr``; after a step
    ``cos_update_grad``; and where the optimizer keeps Adam's moments ``kl_adam``,
    ``kl_adam_reverse``, ``kl_invalid_share``, ``v_hat_tracks`` and ``sqrt_v_norm``,
    ``sqrt_v_min``, ``sqrt_v_max`` (of √v̂); in float64."""
    grads = obs.per_sample() if obs.per_sample is not None else None
    if not grads:
        return {}
    batch = obs.batch.double()
    moments = adam_moments(obs)
    tensors = {name: flatten(g, 2).double() for name, g in grads.items()}
    groups = {f"{name}/": G for name, G in tensors.items()}
    groups[""] = torch.cat(list(tensors.values()), dim=-1)
    if moments and set(moments) == set(tensors):
        joined = tuple(torch.cat([moments[n][i].double() for n in tensors], -1) for i in (0, 1))
        pairs = {**{f"{n}/": tuple(x.double() for x in moments[n]) for n in tensors}, "": joined}
    else:
        pairs = {}
    steps = {}
    if obs.update is not None:
        steps = {f"{n}/": flat_runs(obs.update.delta[n]).double() for n in tensors}
        steps[""] = torch.cat([steps[f"{n}/"] for n in tensors], dim=-1)
    out = {}
    for prefix, G in groups.items():
        out |= {
            f"{prefix}mean_sq": mean_sq(G),
            f"{prefix}trace_var": trace_var(G),
            f"{prefix}noise_scale": noise_scale(G),
            f"{prefix}noise_scale_2b": noise_scale_2b(G),
            f"{prefix}snr": snr(G, batch),
        }
        if prefix in steps:
            out[f"{prefix}cos_update_grad"] = cos_update_grad(G, steps[prefix])
        if prefix in pairs:
            m_hat, v_hat = pairs[prefix]
            sqrt_v = v_hat.sqrt()
            out |= {
                f"{prefix}kl_adam": kl_adam(G, batch, m_hat, v_hat),
                f"{prefix}kl_adam_reverse": kl_adam_reverse(G, batch, m_hat, v_hat),
                f"{prefix}kl_invalid_share": kl_invalid_share(G, batch, m_hat, v_hat),
                f"{prefix}v_hat_tracks": v_hat_tracks(G, batch, m_hat, v_hat),
                f"{prefix}sqrt_v_norm": sqrt_v.norm(dim=-1),
                f"{prefix}sqrt_v_min": sqrt_v.amin(-1),
                f"{prefix}sqrt_v_max": sqrt_v.amax(-1),
            }
    return out
