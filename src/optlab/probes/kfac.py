"""Probes of K-FAC's curvature and of weight decay's mechanisms 2 and 3 (Grosse (2022), CSC 2541
lecture 5, "Three Mechanisms"; Zhang, Wang, Xu and Grosse (2019)).

Mechanism 3, damping: K-FAC inverts A ⊗ G + γI, in factored form (A + π√γ I) ⊗ (G + (√γ/π) I)
(Martens and Grosse 2015, §6.3). Where the factors' eigenvalues are small against their damping,
the step is SGD's at rate η/γ; under the Fisher G shrinks as the model fits the data. Mechanism 2, Jacobian regularization: decoupled decay under K-FAC approximately minimizes
θᵀĜθ, Ĝ its Gauss-Newton approximation, which for a linear network without biases and with
whitened inputs is (L + 1)‖J‖²_F, J the input-output Jacobian.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optlab.optim.kfac import gauss_newton_norm, layer_factors, pi_scale
from optlab.probes.base import Observation


def _trace(m: Tensor) -> Tensor:
    return m.diagonal(dim1=-2, dim2=-1).sum(-1)


def lambda_max(m: Tensor) -> Tensor:
    """The largest eigenvalue of each run's symmetric m (R, n, n); NaN for a run whose factor
    is not finite (it diverged: eigh would fail on it, and the other runs go on)."""
    finite = m.isfinite().flatten(1).all(1)
    top = torch.linalg.eigvalsh(torch.where(finite[:, None, None], m, 0.0))[..., -1]
    return torch.where(finite, top, torch.nan)


def kfac(obs: Observation) -> dict[str, Tensor]:
    """For each K-FAC layer, by its weight tensor ``<t>``, from the running factors A and G the
    optimizer keeps and its damping γ, in float64: ``<t>/A_trace``, ``<t>/G_trace``, the largest
    eigenvalues ``<t>/A_lambda_max``, ``<t>/G_lambda_max``, and the damping over them:

    ``<t>/A_damping_ratio`` = π√γ / λ_max(A), ``<t>/G_damping_ratio`` = (√γ/π) / λ_max(G), each
    factor's damping under the π split against its largest eigenvalue, and
    ``<t>/damping_ratio`` = γ / (λ_max(A)·λ_max(G)), γ against A ⊗ G's largest eigenvalue (their
    product): ≫ 1 means the damping dominates every direction and K-FAC steps as SGD at η/γ does.

    Nothing for other optimizers, or before K-FAC's first step (no factors yet)."""
    opt = obs.optimizer
    if opt is None or opt.torch_optimizer is not None:
        return {}
    out = {}
    for name, state in opt.state.items():
        if "A" not in state:
            continue
        A, G = state["A"].double(), state["G"].double()
        gamma = torch.as_tensor(opt.hyper_for(name)["damping"], dtype=A.dtype, device=A.device)
        pi = pi_scale(A, G)
        lambda_a, lambda_g = lambda_max(A), lambda_max(G)
        out[f"{name}/A_trace"] = _trace(A)
        out[f"{name}/G_trace"] = _trace(G)
        out[f"{name}/A_lambda_max"] = lambda_a
        out[f"{name}/G_lambda_max"] = lambda_g
        out[f"{name}/A_damping_ratio"] = pi * gamma.sqrt() / lambda_a
        out[f"{name}/G_damping_ratio"] = gamma.sqrt() / pi / lambda_g
        out[f"{name}/damping_ratio"] = gamma / (lambda_a * lambda_g)
    return out


def jacobian(obs: Observation) -> dict[str, Tensor]:
    """Mechanism 2 on the engine's fixed probe batch (``Observation.gauss_newton``), in float64:

    ``gn_norm`` = Σ_layers tr(W̄ᵀ Ĝ W̄ Â), θᵀĜθ with Â, Ĝ the gauss_newton factors measured
    fresh on the batch (not an optimizer's: this works for every optimizer), W̄ = [W b] and Â
    over [a, 1] where the layer has a bias; ``jacobian_sq`` = E_x ‖J(x)‖²_F, J = ∂f/∂x;
    ``ratio`` = gn_norm / ((L + 1)·jacobian_sq), L + 1 the number of Linear layers (Zhang et al.
    2019 write L + 1 for the weight matrices of a net homogeneous of degree L + 1 in θ; the
    lecture calls L "the number of layers"). For a linear network without biases on whitened
    inputs (E[x xᵀ] = I) the ratio is exactly 1 (``optlab.optim.kfac.jacobian_norm_sq``).

    Inputs that are not whitened add their second moment Σ = E[x xᵀ]: a linear network's layer
    term is then tr(J Σ Jᵀ). So also ``jacobian_sq_whitened`` = E_x tr(J(x) Σ J(x)ᵀ), the
    Jacobian's norm w.r.t. whitened inputs z = Σ^(−1/2) x (gn_norm is the same in those
    coordinates: K-FAC is invariant to the first layer's affine reparametrization), and
    ``ratio_whitened`` = gn_norm / ((L + 1)·jacobian_sq_whitened), exactly 1 for a linear
    network without biases on any inputs.

    Only the two Jacobian norms for a model without stacked Linear layers, or with a frozen one
    (its weight is no parameter); nothing for inputs that are not real numbers."""
    measured = obs.gauss_newton() if obs.gauss_newton is not None else None
    if measured is None:
        return {}
    out = {
        "jacobian_sq": measured.jacobian_sq.double(),
        "jacobian_sq_whitened": measured.jacobian_sq_whitened.double(),
    }
    weights, factors = [], []
    for prefix, (a, g) in measured.layers.items():
        weight, bias = obs.params.get(f"{prefix}weight"), obs.params.get(f"{prefix}bias")
        if weight is None:
            return out
        if bias is not None:
            weight = torch.cat([weight, bias.unsqueeze(-1)], dim=-1)
        weights.append(weight.double())
        factors.append(layer_factors(a.double(), g.double(), bias is not None))
    if weights:
        gn_norm = gauss_newton_norm(weights, factors)
        out["gn_norm"] = gn_norm
        out["ratio"] = gn_norm / (len(weights) * out["jacobian_sq"])
        out["ratio_whitened"] = gn_norm / (len(weights) * out["jacobian_sq_whitened"])
    return out
