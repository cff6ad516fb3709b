"""Statistics of per-example gradients, and how Adam's moments match them: pure functions.

Per-example gradients G (R, N, d) of one tensor (the probe's N fixed examples) enter only
through each coordinate's mean ḡ_i and unbiased variance Σ_ii over the N examples
(``Spread``: one pass over G, or from Σ_b g_b and Σ_b g_b² where a taped backward gives those
without G, ``optlab.engine.grad_moments``). With B the training batch (the minibatch
gradient Adam steps with has covariance Σ/B):

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
    def of_sums(cls, total: Tensor, squares: Tensor, n: int) -> Spread:
        """From Σ_b g_b and Σ_b g_b² (R, ...), float64: Σ_ii = (Σ g² − (Σ g)²/N)/(N − 1),
        floored at 0 (rounding can take a variance 0 below it)."""
        total, squares = total.reshape(total.shape[0], -1), squares.reshape(total.shape[0], -1)
        var = (squares - total.pow(2) / n).clamp_min_(0.0) / (n - 1)
        return cls(total / n, var, n)

    @classmethod
    def stack(cls, parts: list[Spread]) -> Spread:
        """Slices of runs' spreads (of one tensor) as one stack's, in order."""
        return cls(
            *(torch.cat([getattr(p, f) for p in parts]) for f in ("mean", "var")), parts[0].n
        )

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
    return _noise_scale(trace_var(s), mean_sq(s))


def _noise_scale(tr: Tensor, sq: Tensor) -> Tensor:
    return tr / sq


def noise_scale_2b(s: Spread) -> Tensor:
    """B_simple from McCandlish et al.'s (2018, App. A) two-batch estimator, S/|G|² with
    |G|² = (B_big|G_big|² − B_small|G_small|²)/(B_big − B_small) and
    S = (|G_small|² − |G_big|²)/(1/B_small − 1/B_big), both unbiased. With the N examples
    one at a time as the small batches (|G_small|² their mean ‖g_b‖²) and all N as the big:
    S = tr Σ and |G|² = ‖ḡ‖² − tr Σ/N, so B_simple = tr Σ/(‖ḡ‖² − tr Σ/N), ``noise_scale``
    without the bias of ‖ḡ‖². Huge or negative where N examples do not resolve the mean
    gradient (‖ḡ‖² ≲ tr Σ/N)."""
    return _noise_scale_2b(trace_var(s), mean_sq(s), s.n)


def _noise_scale_2b(tr: Tensor, sq: Tensor, n: int) -> Tensor:
    return tr / (sq - tr / n)


def snr(s: Spread, batch: Tensor | float) -> Tensor:
    """‖ḡ‖² / (tr Σ/B): the mean gradient against the variance of a batch of B's mean."""
    return _snr(trace_var(s), mean_sq(s), batch)


def _snr(tr: Tensor, sq: Tensor, batch: Tensor | float) -> Tensor:
    return sq / (tr / batch)


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


def _kl_terms(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> Tensor:
    """Per coordinate ½[σ1²/σ2² + (μ2 − μ1)²/σ2² − 1 + ln(σ2²/σ1²)], 0 where ``invalid``: the
    terms of KL(N(μ1, diag σ1²) ‖ N(μ2, diag σ2²)), a sum over coordinates."""
    terms = var1 / var2 + (mu2 - mu1).pow(2) / var2 - 1 + (var2 / var1).log()
    return 0.5 * terms.masked_fill(invalid, 0.0)


def _reverse(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> tuple:
    """The Gaussians of ``_gaussians`` the other way round, for the reverse KL."""
    return mu2, var2, mu1, var1, invalid


def kl_adam(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(ḡ, diag(Σ/B)) ‖ N(m̂, diag(v̂ − m̂²))) over the valid coordinates: B a number or
    (R,), m̂ and v̂ (R, d)."""
    return _kl_terms(*_gaussians(s, batch, m_hat, v_hat)).sum(-1)


def kl_adam_reverse(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """KL(N(m̂, diag(v̂ − m̂²)) ‖ N(ḡ, diag(Σ/B))), the other direction of ``kl_adam``."""
    return _kl_terms(*_reverse(*_gaussians(s, batch, m_hat, v_hat))).sum(-1)


def kl_invalid_share(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The share of coordinates where v̂ − m̂² ≤ 0 or Σ_ii = 0, which the KLs leave out."""
    return _gaussians(s, batch, m_hat, v_hat)[-1].double().mean(-1)


def v_hat_tracks(s: Spread, batch: Tensor | float, m_hat: Tensor, v_hat: Tensor) -> Tensor:
    """The geometric mean over coordinates of (v̂ − m̂²)/(Σ_ii/B), exp of the mean log ratio: 1
    where Adam's second moment less the squared first tracks the minibatch gradient's
    variance (Balles and Hennig 2018). Geometric, as a ratio of variances is a scale: the
    arithmetic mean is the few coordinates whose Σ_ii/B is tiny (1e13 on the final model at
    B = 1024). Coordinates either variance of is ≤ 0 are left out; nan if none is left."""
    gaussians = _gaussians(s, batch, m_hat, v_hat)
    return _tracks(_log_ratio(*gaussians).sum(-1), (~gaussians[-1]).sum(-1))


def _log_ratio(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, invalid: Tensor) -> Tensor:
    return (var2 / var1).log().masked_fill(invalid, 0.0)


def _tracks(log_ratio_sum: Tensor, valid: Tensor) -> Tensor:
    return (log_ratio_sum / valid).exp()


def cos_update_grad(s: Spread, delta: Tensor) -> Tensor:
    """cos(Δθ, −ḡ) = −⟨Δθ, ḡ⟩/(‖Δθ‖·‖ḡ‖): the step taken, Δθ (R, d), against the descent
    direction of the examples' mean gradient; 1 for plain SGD on those examples."""
    return _cos(-(delta * s.mean).sum(-1), delta.pow(2).sum(-1), mean_sq(s))


def _cos(dot: Tensor, step_sq: Tensor, grad_sq: Tensor) -> Tensor:
    return dot / (step_sq.sqrt() * grad_sq.sqrt())


# the terms reduced by their extreme over coordinates; every other term is summed
_EXTREMES = {"sqrt_v_min": "amin", "sqrt_v_max": "amax"}


def _terms(
    s: Spread, batch: Tensor, moments: tuple[Tensor, Tensor] | None, delta: Tensor | None
) -> dict[str, Tensor]:
    """Per coordinate (R, d), the terms each statistic sums (or takes the min or max of)."""
    out = {"sq": s.mean.pow(2), "tr": s.var}
    if delta is not None:
        out |= {"dot": -(delta * s.mean), "step_sq": delta.pow(2)}
    if moments is not None:
        m_hat, v_hat = moments
        gaussians = _gaussians(s, batch, m_hat, v_hat)  # built once for the terms below
        invalid = gaussians[-1]
        out |= {
            "kl": _kl_terms(*gaussians),
            "kl_rev": _kl_terms(*_reverse(*gaussians)),
            "invalid": invalid.double(),
            "log_ratio": _log_ratio(*gaussians),
            "v": v_hat,
            "sqrt_v_min": v_hat.sqrt(),
        }
        out["sqrt_v_max"] = out["sqrt_v_min"]
    return out


def _statistics(t: dict[str, Tensor], coords: Tensor, batch: Tensor, n: int) -> dict:
    """The probe's statistics from the sums of ``_terms`` over ``coords`` coordinates."""
    tr, sq = t["tr"], t["sq"]
    out = {
        "mean_sq": sq,
        "trace_var": tr,
        "noise_scale": _noise_scale(tr, sq),
        "noise_scale_2b": _noise_scale_2b(tr, sq, n),
        "snr": _snr(tr, sq, batch),
    }
    if "dot" in t:
        out["cos_update_grad"] = _cos(t["dot"], t["step_sq"], sq)
    if "kl" in t:
        out |= {
            "kl_adam": t["kl"],
            "kl_adam_reverse": t["kl_rev"],
            "kl_invalid_share": t["invalid"] / coords,
            "v_hat_tracks": _tracks(t["log_ratio"], coords - t["invalid"]),
            "sqrt_v_norm": t["v"].sqrt(),
            "sqrt_v_min": t["sqrt_v_min"],
            "sqrt_v_max": t["sqrt_v_max"],
        }
    return out


def grad_stats(obs: Observation) -> dict[str, Tensor]:
    """The ``grad_stats`` probe: on the engine's fixed examples (``Observation.per_sample``, at
    the weights the last step read) and each run's training batch B (``Observation.batch``),
    per tensor (``<tensor>/…``) and over all parameters (bare names), ``mean_sq``,
    ``trace_var``, ``noise_scale``, ``noise_scale_2b``, ``snr``; after a step
    ``cos_update_grad``; and where the optimizer keeps Adam's moments ``kl_adam``,
    ``kl_adam_reverse``, ``kl_invalid_share``, ``v_hat_tracks`` and ``sqrt_v_norm``,
    ``sqrt_v_min``, ``sqrt_v_max`` (of √v̂); in float64. Each term is computed once over all
    coordinates, then summed per tensor (one ``index_add`` per term) and over them all."""
    spreads = obs.per_sample() if obs.per_sample is not None else None
    if not spreads:
        return {}
    names = list(spreads)
    s = Spread.join(list(spreads.values()))
    moments = adam_moments(obs)
    joined = None
    if moments and set(moments) == set(names):
        joined = tuple(torch.cat([moments[n][i].double() for n in names], -1) for i in (0, 1))
    delta = None
    if obs.update is not None:
        delta = torch.cat([flat_runs(obs.update.delta[n]).double() for n in names], dim=-1)
    batch = obs.batch.double()
    sums = _sums_by_tensor(
        _terms(s, batch, joined, delta), [spreads[n].mean.shape[-1] for n in names]
    )
    coords = sums.pop("coords")
    # one evaluation for every tensor and the whole (the last column) at once
    stats = _statistics(sums, coords, batch[:, None], s.n)
    out = {name: value[:, -1] for name, value in stats.items()}
    for i, tensor in enumerate(names):
        out |= {f"{tensor}/{name}": value[:, i] for name, value in stats.items()}
    return out


def _sums_by_tensor(terms: dict[str, Tensor], sizes: list[int]) -> dict[str, Tensor]:
    """Each term (R, d) reduced over each tensor's coordinates (the tensors one after
    another, ``sizes`` long) and over all: (R, T + 1), the whole in the last column; the
    coordinates counted under ``coords``."""
    runs, device = next(iter(terms.values())).shape[0], next(iter(terms.values())).device
    counts = torch.tensor(sizes, device=device)
    tensor_of = torch.repeat_interleave(torch.arange(len(sizes), device=device), counts)
    out = {"coords": torch.cat([counts, counts.sum()[None]]).double()}
    for key, value in terms.items():
        if key in _EXTREMES:
            how = _EXTREMES[key]
            start = value.new_zeros(runs, len(sizes))
            index = tensor_of.expand(runs, -1)
            part = start.scatter_reduce(1, index, value, how, include_self=False)
            whole = getattr(part, how)(-1, keepdim=True)
        else:
            part = value.new_zeros(runs, len(sizes)).index_add_(1, tensor_of, value)
            whole = part.sum(-1, keepdim=True)
        out[key] = torch.cat([part, whole], dim=-1)
    return out
