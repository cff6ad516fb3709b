"""Statistics of per-example gradients, and how Adam's moments match them: pure functions.

Per-example gradients G (R, N, d) of one tensor (the probe's N fixed examples) enter only
through each coordinate's mean ḡ_i and unbiased variance Σ_ii over the N examples
(``Spread``, one pass over G; a whole model's is its tensors' joined). With B the training
batch (the minibatch gradient Adam steps with has covariance Σ/B):

- ``mean_sq`` ‖ḡ‖² and ``trace_var`` tr Σ;
- ``noise_scale`` B_simple = tr Σ / ‖ḡ‖², the batch size past which a larger batch stops
  paying (McCandlish et al. 2018, "An empirical model of large-batch training"), and
  ``noise_scale_2b``, the same from their two-batch estimator (App. A), unbiased in ‖G‖²;
- ``snr`` ‖ḡ‖² / (tr Σ/B), the mean gradient's signal against the noise of a batch of B;
- ``kl_adam`` and ``kl_adam_reverse``, KL between the minibatch gradient's Gaussian
  N(ḡ, diag(Σ/B)) and the one Adam's bias-corrected moments imply, N(m̂, diag(v̂ − m̂²))
  (the 2025 thesis notepad's question);
- ``v_hat_tracks``, the geometric mean of (v̂ − m̂²)/(Σ/B): whether v̂ − m̂² estimates the
  gradient's variance, as Balles and Hennig (2018) read Adam;
- ``cos_update_grad``, cos(Δθ, −ḡ) between the step taken and the mean gradient.

Each returns one value per run, (R,). A coordinate where v̂ − m̂² ≤ 0 or Σ_ii = 0 has no
Gaussian: it is counted (``kl_invalid_share``) and left out of the KLs and ``v_hat_tracks``
(a floor at the dtype's smallest number made the KL infinite: on digits a third of the first
layer's weights see pixels that are 0 in every image, and their gradients are exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optlab.probes.base import Observation
from optlab.probes.optimizer import adam_moments
from optlab.stacking import flat_runs, per_run

# coordinates per pass of ``Spread.of``: N = 256 examples × 1,024 float32 deviations (1 MB) stay
# in cache; 3–4× faster than torch.var_mean over a whole tensor of the final model (measured)
BLOCK = 1024


@dataclass(frozen=True)
class Spread:
    """Per coordinate, over N examples: ``mean`` ḡ_i and unbiased ``var`` Σ_ii, (R, d) each."""

    mean: Tensor
    var: Tensor
    n: int

    @classmethod
    def of(cls, G: Tensor) -> Spread:
        """From per-example gradients G (R, N, ...) in G's dtype, as float64: the mean, then
        Σ_b (G_bi − ḡ_i)²/(N − 1) over ``BLOCK`` coordinates at a time."""
        flat, n = G.reshape(*G.shape[:2], -1), G.shape[1]
        mean = flat.mean(1)
        blocks = range(0, flat.shape[-1], BLOCK)
        var = torch.cat(
            [
                (flat[..., i : i + BLOCK] - mean[:, None, i : i + BLOCK]).pow_(2).sum(1)
                for i in blocks
            ],
            dim=-1,
        )
        return cls(mean.double(), var.double() / (n - 1), n)

    @classmethod
    def join(cls, parts: list[Spread]) -> Spread:
        """Several tensors' spreads as one vector's (all parameters)."""
        cat = lambda name: torch.cat([getattr(p, name) for p in parts], dim=-1)  # noqa: E731
        return cls(cat("mean"), cat("var"), parts[0].n)


def mean_sq(s: Spread) -> Tensor:
    """‖ḡ‖², the squared norm of the examples' mean gradient."""
    return s.mean.pow(2).sum(-1)


def trace_var(s: Spread) -> Tensor:
    """tr Σ = Σ_i Σ_ii, the examples' covariance unbiased over the N examples."""
    return s.var.sum(-1)


def noise_scale(s: Spread) -> Tensor:
    """B_simple = tr Σ / ‖ḡ‖² (McCandlish et al. 2018)."""
    return trace_var(s) / mean_sq(s)


def noise_scale_2b(s: Spread) -> Tensor:
    """B_simple from McCandlish et al.'s (2018, App. A) two-batch estimator, S/|G|² with
    |G|² = (B_big|G_big|² − B_small|G_small|²)/(B_big − B_small) and
    S = (|G_small|² − |G_big|²)/(1/B_small − 1/B_big), both unbiased. With the N examples
    one at a time as the small batches (|G_small|² their mean ‖g_b‖²) and all N as the big:
    S = tr Σ and |G|² = ‖ḡ‖² − tr Σ/N, so B_simple = tr Σ/(‖ḡ‖² − tr Σ/N), ``noise_scale``
    without the bias of ‖ḡ‖². Huge or negative where N examples do not resolve the mean
    gradient (‖ḡ‖² ≲ tr Σ/N)."""
    return trace_var(s) / (mean_sq(s) - trace_var(s) / s.n)


def snr(s: Spread, batch: Tensor | float) -> Tensor:
    """‖ḡ‖² / (tr Σ/B): the mean gradient against the variance of a batch of B's mean."""
    return mean_sq(s) / (trace_var(s) / batch)


def _gaussians(
    s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor
) -> tuple[Tensor, ...]:
    """μ1 = ḡ, σ1² = Σ_ii/B; μ2 = m̂, σ2² = v̂ − m̂²; and which coordinates have a variance
    ≤ 0 (both variances floored at the dtype's tiny, so the masked terms stay finite)."""
    mu1, var1 = s.mean, s.var / per_run(batch, 2)
    mu2, var2 = m_hat, v_hat - m_hat.pow(2)
    invalid = (var1 <= 0) | (var2 <= 0)
    tiny = torch.finfo(var1.dtype).tiny
    return mu1, var1.clamp_min(tiny), mu2, var2.clamp_min(tiny), invalid


def _kl(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> Tensor:
    """KL(N(μ1, diag σ1²) ‖ N(μ2, diag σ2²)) = ½ Σ_i [σ1²/σ2² + (μ2 − μ1)²/σ2² − 1 + ln(σ2²/σ1²)],
    the sum over the coordinates not ``invalid``."""
    terms = var1 / var2 + (mu2 - mu1).pow(2) / var2 - 1 + (var2 / var1).log()
    return 0.5 * terms.masked_fill(invalid, 0.0).sum(-1)


def kl_adam(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(ḡ, diag(Σ/B)) ‖ N(m̂, diag(v̂ − m̂²))) over the valid coordinates: B a number or
    (R,), m̂ and v̂ (R, d)."""
    return _kl(*_gaussians(s, batch, m_hat, v_hat))


def kl_adam_reverse(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(m̂, diag(v̂ − m̂²)) ‖ N(ḡ, diag(Σ/B))), the other direction of ``kl_adam``."""
    return _kl_reverse(*_gaussians(s, batch, m_hat, v_hat))


def _kl_reverse(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> Tensor:
    return _kl(mu2, var2, mu1, var1, invalid)


def kl_invalid_share(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The share of coordinates where v̂ − m̂² ≤ 0 or Σ_ii = 0, which the KLs leave out."""
    return _gaussians(s, batch, m_hat, v_hat)[-1].double().mean(-1)


def v_hat_tracks(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The geometric mean over coordinates of (v̂ − m̂²)/(Σ_ii/B), exp of the mean log ratio: 1
    where Adam's second moment less the squared first tracks the minibatch gradient's
    variance (Balles and Hennig 2018). Geometric, as a ratio of variances is a scale: the
    arithmetic mean is the few coordinates whose Σ_ii/B is tiny (1e13 on the final model at
    B = 1024). Coordinates either variance of is ≤ 0 are left out; nan if none is left."""
    return _tracks(*_gaussians(s, batch, m_hat, v_hat))


def _tracks(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> Tensor:
    log_ratio = (var2 / var1).log().masked_fill(invalid, 0.0)
    return (log_ratio.sum(-1) / (~invalid).sum(-1)).exp()


def cos_update_grad(s: Spread, delta: Tensor) -> Tensor:
    """cos(Δθ, −ḡ) = −⟨Δθ, ḡ⟩/(‖Δθ‖·‖ḡ‖): the step taken, Δθ (R, d), against the descent
    direction of the examples' mean gradient; 1 for plain SGD on those examples."""
    g = s.mean
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
    spreads = {name: Spread.of(g) for name, g in grads.items()}
    groups = {f"{name}/": s for name, s in spreads.items()}
    groups[""] = Spread.join(list(spreads.values()))
    moments = adam_moments(obs)
    pairs = {}
    if moments and set(moments) == set(spreads):
        pairs = {f"{n}/": tuple(x.double() for x in moments[n]) for n in spreads}
        pairs[""] = tuple(torch.cat([pairs[f"{n}/"][i] for n in spreads], -1) for i in (0, 1))
    steps = {}
    if obs.update is not None:
        steps = {f"{n}/": flat_runs(obs.update.delta[n]).double() for n in spreads}
        steps[""] = torch.cat([steps[f"{n}/"] for n in spreads], dim=-1)
    out = {}
    for prefix, s in groups.items():
        out |= {
            f"{prefix}mean_sq": mean_sq(s),
            f"{prefix}trace_var": trace_var(s),
            f"{prefix}noise_scale": noise_scale(s),
            f"{prefix}noise_scale_2b": noise_scale_2b(s),
            f"{prefix}snr": snr(s, batch),
        }
        if prefix in steps:
            out[f"{prefix}cos_update_grad"] = cos_update_grad(s, steps[prefix])
        if prefix in pairs:
            m_hat, v_hat = pairs[prefix]
            sqrt_v = v_hat.sqrt()
            gaussians = _gaussians(s, batch, m_hat, v_hat)  # built once for the four below
            out |= {
                f"{prefix}kl_adam": _kl(*gaussians),
                f"{prefix}kl_adam_reverse": _kl_reverse(*gaussians),
                f"{prefix}kl_invalid_share": gaussians[-1].double().mean(-1),
                f"{prefix}v_hat_tracks": _tracks(*gaussians),
                f"{prefix}sqrt_v_norm": sqrt_v.norm(dim=-1),
                f"{prefix}sqrt_v_min": sqrt_v.amin(-1),
                f"{prefix}sqrt_v_max": sqrt_v.amax(-1),
            }
    return out
