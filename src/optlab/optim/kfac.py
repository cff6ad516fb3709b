"""K-FAC for networks of Linear layers (Martens and Grosse 2015), as pure functions over stacks
with a leading run axis R: one layer at a time, each run with its own factors and damping.

For a layer s = W̄ ā with ā = [a, 1] (the bias is W̄'s last column, the input's constant 1
its last entry) K-FAC approximates the layer's block of the curvature by A ⊗ G, with
A = E[ā āᵀ] over the layer's inputs and G = E[g gᵀ] over g, the gradients of per-example
losses w.r.t. the layer's outputs s. One step, in the order a caller runs it:

1. ``layer_factors(a, g)`` from the batch, and ``update_factors`` keeps their running average;
2. ``refresh_inverses`` forms the damped inverses every ``inverse_every`` steps;
3. ``kfac`` steps along −Ĝ⁻¹ [∇W ∇b] Â⁻¹, with momentum and weight decay.

Conventions. g is per example: the caller passes N × the gradient of the batch's mean loss
w.r.t. s (the gradient of the *summed* per-example losses, as ``curvature_losses`` sums them),
so that ∇W̄ = E[g āᵀ] and G does not shrink with the batch size. vec stacks columns, so
vec(G X A) = (A ⊗ G) vec(X) for symmetric A; W is in PyTorch's (out, in) layout.

Curvature: what g is, chosen by the caller (``curvature_losses`` gives the loss to backpropagate):

- ``fisher``: the true Fisher. g from labels sampled from the model's own predictive
  distribution (softmax for cross-entropy; N(f, I) for ½‖f − y‖²). As the model fits the data,
  softmax outputs saturate and G shrinks, so the damping takes over and K-FAC turns into SGD
  (Grosse (2022), CSC 2541 lecture 5, mechanism 3).
- ``gauss_newton``: E[Jᵀ J] with J the Jacobian of the network's outputs, i.e. the output
  Hessian taken as I. For ½‖f − y‖² that is the exact Gauss-Newton matrix, and for one linear
  layer K-FAC is then exact (see ``curvature_losses``). For cross-entropy the generalized
  Gauss-Newton matrix, with the softmax's Hessian diag(p) − ppᵀ, *equals* the true Fisher (the
  logits are the natural parameters of a categorical distribution), so a gauss_newton apart
  from fisher must drop that Hessian: we take H = I on the logits, the Gauss-Newton matrix of
  squared error on the logits, as Zhang, Wang, Xu and Grosse (2019) did for their K-FAC-G
  (their code puts a Gaussian predictive distribution on the logits). It is the curvature their
  Jacobian identity is about (``gauss_newton_norm``) and the one that does not shrink as the
  fit improves, which is the contrast of mechanism 3.
- ``empirical``: g from the true labels, the gradients of the training loss itself. Warning
  (the lecture, after Kunstner et al. 2019): the empirical Fisher is not the Fisher; it is often
  justified as an approximation to the Hessian but is often a poor one, and resembles the true
  Fisher only when the model is well specified and fits the data well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from optlab.optim.decay import DECAYS
from optlab.optim.rules import sgd
from optlab.stacking import per_run

State = dict[str, Tensor]

CURVATURES = ("fisher", "gauss_newton", "empirical")
DECAY_NAMES = (*DECAYS, "coupled")  # "coupled": λθ joins the gradient (L2 in the loss)


# ---- Kronecker factors -------------------------------------------------------------------------


def layer_factors(a: Tensor, g: Tensor, bias: bool = True) -> tuple[Tensor, Tensor]:
    """Â = E[ā āᵀ] (R, d_in+1, d_in+1) with ā = [a, 1] (just a without ``bias``) and
    Ĝ = E[g gᵀ] (R, d_out, d_out), E the mean over the batch's rows: a (R, N, d_in) the layer's
    inputs, g (R, M, d_out) the per-example output gradients (M = N, or K·N for K backward
    passes stacked, see ``curvature_losses``)."""
    if bias:
        a = torch.cat([a, a.new_ones(*a.shape[:-1], 1)], dim=-1)
    return a.mT @ a / a.shape[-2], g.mT @ g / g.shape[-2]


def ema(old: Tensor | None, new: Tensor, decay) -> Tensor:
    """Running average of a factor, per run: decay·old + (1 − decay)·new, decay a number or an
    (R,) tensor. The first step (``old`` None) takes ``new`` as is, as Martens and Grosse's
    ε_k = min(1 − 1/k, ε) does at k = 1, so no zero initial factor biases the average."""
    if old is None:
        return new
    d = per_run(decay, new.dim())
    return d * old + (1 - d) * new


def update_factors(state: State, a: Tensor, g: Tensor, decay, bias: bool = True) -> State:
    """State with A and G moved to their running averages with this batch's factors."""
    a_hat, g_hat = layer_factors(a, g, bias)
    return {**state, "A": ema(state.get("A"), a_hat, decay), "G": ema(state.get("G"), g_hat, decay)}


# ---- damping and inverses ----------------------------------------------------------------------


def pi_scale(A: Tensor, G: Tensor) -> Tensor:
    """π = √((tr A / dim A) / (tr G / dim G)) per run (R,), the factored Tikhonov damping's split
    (Martens and Grosse 2015, §6.3): the ratio of the factors' average eigenvalues, so each
    factor is damped in proportion to its own scale. Traces are floored at the dtype's smallest
    normal number, so a vanished factor gives a huge or tiny π, not a division by zero."""
    tiny = torch.finfo(A.dtype).tiny
    a_mean = A.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(tiny) / A.shape[-1]
    g_mean = G.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(tiny) / G.shape[-1]
    return (a_mean / g_mean).sqrt()


def damped_inverses(A: Tensor, G: Tensor, damping) -> tuple[Tensor, Tensor]:
    """(A + π√γ I)⁻¹ and (G + (√γ/π) I)⁻¹ per run (Martens and Grosse 2015, §6.3), γ a number or
    an (R,) tensor, γ > 0. Their Kronecker product approximates (A ⊗ G + γ I)⁻¹: the product of
    the damped factors adds γ I plus the cross terms π√γ I ⊗ G and (√γ/π) A ⊗ I.

    By Cholesky inverse, not eigh: the damped factors are symmetric positive definite, and a
    Cholesky factorization and inverse cost several times less than an eigendecomposition with
    its eigenvectors. eigh would pay
    off only if γ changed between refreshes (re-damping reuses the eigenvectors) or for
    eigenvalue-corrected variants; here γ is fixed per run and the inverses are kept until the
    next refresh anyway."""
    gamma = torch.as_tensor(damping, dtype=A.dtype, device=A.device).sqrt()
    pi = pi_scale(A, G)
    eye_a = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    eye_g = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    A_d = A + (pi * gamma)[..., None, None] * eye_a
    G_d = G + (gamma / pi)[..., None, None] * eye_g
    return _spd_inverse(A_d), _spd_inverse(G_d)


def _spd_inverse(m: Tensor) -> Tensor:
    """Each run's inverse by Cholesky; NaN for a run whose factor is not positive definite
    (its factors went non-finite: the run has diverged, and the others go on)."""
    chol, info = torch.linalg.cholesky_ex(m)
    inverse = torch.cholesky_inverse(chol)
    return torch.where(per_run(info == 0, inverse.dim()), inverse, torch.nan)


def refresh_inverses(state: State, step: int, damping, inverse_every: int = 1) -> State:
    """State with ``A_inv``, ``G_inv`` from its factors and ``inverse_step`` = t (a CPU tensor,
    read without a device sync) when none were computed yet or ``inverse_every`` steps have
    passed since; otherwise unchanged (the inverses are stale by design between refreshes)."""
    if "inverse_step" in state and step - int(state["inverse_step"]) < inverse_every:
        return state
    A_inv, G_inv = damped_inverses(state["A"], state["G"], damping)
    return {**state, "A_inv": A_inv, "G_inv": G_inv, "inverse_step": torch.tensor(step)}


# ---- the step ----------------------------------------------------------------------------------


def _join(weight: Tensor, bias: Tensor | None) -> Tensor:
    """[W b] (R, out, in+1), the bias as the last column; W alone without a bias."""
    return weight if bias is None else torch.cat([weight, bias.unsqueeze(-1)], dim=-1)


def _split(joined: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    return (joined, None) if bias is None else (joined[..., :-1], joined[..., -1])


def precondition(
    grad_w: Tensor, grad_b: Tensor | None, a_inv: Tensor, g_inv: Tensor
) -> tuple[Tensor, Tensor | None]:
    """K-FAC's direction for one layer, [ΔW Δb] = Ĝ⁻¹ [∇W ∇b] Â⁻¹, i.e.
    vec Δ = (Â⁻¹ ⊗ Ĝ⁻¹) vec ∇ (Martens and Grosse 2015, §4), split back into ΔW (R, out, in)
    and Δb (R, out), or None without a bias. ``a_inv`` and ``g_inv`` are the damped inverses."""
    return _split(g_inv @ _join(grad_w, grad_b) @ a_inv, grad_b)


def kfac_init(weight: Tensor, bias: Tensor | None = None) -> State:
    """The momentum buffer b_0 = 0 over [W b]; the factors and inverses come with the first step."""
    return {"momentum_buffer": torch.zeros_like(_join(weight, bias))}


def kfac(
    weight: Tensor,
    bias: Tensor | None,
    grad_w: Tensor,
    grad_b: Tensor | None,
    state: State,
    *,
    lr,
    momentum=0.0,
    weight_decay=0.0,
    bias_decay=None,
    decay: str = "l2",
) -> tuple[Tensor, Tensor | None, State]:
    """One K-FAC step on a layer's stacked W (R, out, in) and b (R, out) or None, with the damped
    inverses in ``state`` (``refresh_inverses``). With θ = [W b] and ∇ = [∇W ∇b]:

    ``coupled`` (L2 in the loss, ½λ‖θ‖²):  d = Ĝ⁻¹ (∇ + λθ) Â⁻¹;  θ ← θ − η b_t
    decoupled (l2, l1, min, none, as adamw's):  d = Ĝ⁻¹ ∇ Â⁻¹;  θ ← decay(θ, η, λ) − η b_t
                                                (l2: θ − ηλθ − η b_t)
    with b_t = μ b_{t−1} + d, b_0 = 0.

    Heavy-ball momentum acts on the preconditioned direction, as Martens and Grosse (2015, §7)
    mix the previous update with the preconditioned one. Decoupled decay bypasses both the
    preconditioner and the momentum and acts on θ_{t−1}, as in the lecture's
    w ← (1 − αλ)w − αC⁻¹∇J (Grosse (2022), CSC 2541 lecture 5; Zhang et al. 2019); for l2 the
    order is immaterial, d not depending on θ. λ is ``weight_decay`` for W and ``bias_decay``
    (default: the same) for b; numbers or (R,) tensors, as are η and μ.
    """
    if decay not in DECAY_NAMES:
        raise ValueError(f"kfac: decay {decay!r} is not one of {DECAY_NAMES}")
    bias_decay = weight_decay if bias_decay is None else bias_decay
    if decay == "coupled":
        grad_w = grad_w + per_run(weight_decay, weight.dim()) * weight
        if bias is not None:
            grad_b = grad_b + per_run(bias_decay, bias.dim()) * bias
    else:
        weight = DECAYS[decay](weight, lr, weight_decay)
        if bias is not None:
            bias = DECAYS[decay](bias, lr, bias_decay)
    direction = state["G_inv"] @ _join(grad_w, grad_b) @ state["A_inv"]
    buf = per_run(momentum, direction.dim()) * state["momentum_buffer"] + direction
    new_w, new_b = _split(_join(weight, bias) - per_run(lr, buf.dim()) * buf, bias)
    return new_w, new_b, {**state, "momentum_buffer": buf}


def kfac_tree(
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    states: dict[str, State],
    step: int,
    hypers: dict[str, dict],
) -> tuple[dict[str, Tensor], dict[str, State]]:
    """One step over a network's parameters. Each Linear layer whose factors the engine has
    folded into its weight's state (``update_factors``) steps by ``kfac``, its bias (the
    same name ending in ``bias``) with it; any other tensor (a normalizer's gain and bias)
    takes SGD's step with momentum at the same η, μ and λ, the decay coupled (K-FAC's
    factors are of Linear layers only)."""
    layers = {n: n.removesuffix("weight") + "bias" for n, s in states.items() if "A" in s}
    biases = {b for b in layers.values() if b in params}
    new_params, new_states = {}, {}
    for name, p in params.items():
        h, s = hypers[name], states[name]
        if name in layers:
            bias = layers[name] if layers[name] in params else None
            s = refresh_inverses(s, step, h["damping"], h["inverse_every"])
            if "momentum_buffer" not in s:  # the first step: [W b] joined once, not every step
                s["momentum_buffer"] = torch.zeros_like(_join(p, params.get(bias)))
            w, b, s = kfac(
                p,
                params.get(bias),
                grads[name],
                grads.get(bias),
                s,
                lr=h["lr"],
                momentum=h["momentum"],
                weight_decay=h["weight_decay"],
                bias_decay=hypers[bias]["weight_decay"] if bias else None,
                decay=h["decay"],
            )
            new_params[name], new_states[name] = w, s
            if bias:
                new_params[bias], new_states[bias] = b, states[bias]
        elif name not in biases:
            state = s or {"momentum_buffer": torch.zeros_like(p)}
            new_params[name], new_states[name] = sgd(
                p,
                grads[name],
                state,
                step,
                lr=h["lr"],
                momentum=h["momentum"],
                weight_decay=h["weight_decay"],
            )
    return new_params, new_states


# ---- what g is: the loss to backpropagate -----------------------------------------------------


def curvature_losses(
    outputs: Tensor,
    curvature: str,
    loss: str = "cross_entropy",
    targets: Tensor | None = None,
    generators: Sequence[torch.Generator] | None = None,
) -> Tensor:
    """K losses per run (K, R) whose backward passes give the g of ``curvature`` at every layer:
    the gradient of row k w.r.t. a layer's outputs is that layer's g of pass k, already per example
    (each row sums its examples' losses). Stack the K passes' g along the example axis for
    ``layer_factors``. ``outputs`` (R, N, C): logits for ``cross_entropy``, predictions for
    ``half_mse`` (½‖f − y‖² per example, output Hessian I); ``targets``: (R or 1, N) class
    indices or (R or 1, N, C) values, for ``empirical``; ``generators``: one per run, for
    ``fisher``, so a run samples what it would sample alone.

    - fisher (K = 1): Σ_n ℓ(f_n, y_n), y_n ~ softmax(f_n) or N(f_n, I), drawn by inverse CDF
      from each run's generator; E[g gᵀ] over the draws is the Fisher's factor.
    - gauss_newton (K = C): row k is √C Σ_n f_{n,k}, whose g is √C J_kᵀ (J_k the k-th row of
      ∂f/∂s); the mean over the C·N stacked rows is then E_n[Σ_k J_kᵀ J_k] = E[Jᵀ J], exactly.
      For one linear layer f = W̄ ā this gives Ĝ = I and Â ⊗ Ĝ = E[ā āᵀ] ⊗ I = E[J_θᵀ J_θ], the
      exact Gauss-Newton matrix (J_θ = āᵀ ⊗ I): K-FAC's independence approximation costs nothing
      when G does not depend on the example.
    - empirical (K = 1): Σ_n ℓ(f_n, t_n) with the true targets (N × the mean training loss).
    """
    runs, n, classes = outputs.shape
    if curvature == "gauss_newton":
        return math.sqrt(classes) * outputs.sum(1).T
    if curvature == "fisher":
        if generators is None or len(generators) != runs:
            raise ValueError(
                f"curvature 'fisher' samples with one torch.Generator per run ({runs})"
            )
        targets = _sample(outputs.detach(), loss, generators)
    elif curvature == "empirical":
        if targets is None:
            raise ValueError("curvature 'empirical' needs the true targets")
    else:
        raise ValueError(f"curvature {curvature!r} is not one of {CURVATURES}")
    targets = targets.expand(runs, *targets.shape[1:])
    if loss == "half_mse":
        return (0.5 * (outputs - targets).pow(2).sum((1, 2))).unsqueeze(0)
    if loss != "cross_entropy":
        raise ValueError(f"loss {loss!r} is not one of ('cross_entropy', 'half_mse')")
    ce = F.cross_entropy(outputs.reshape(-1, classes), targets.reshape(-1), reduction="none")
    return ce.view(runs, n).sum(1).unsqueeze(0)


def _sample(outputs: Tensor, loss: str, generators: Sequence[torch.Generator]) -> Tensor:
    """Targets from the model's predictive distribution, each run from its own generator (drawn
    on the CPU, as ``decay.dropout`` draws, then moved): class indices y ~ softmax(f) by inverse
    CDF, or y = f + ε, ε ~ N(0, I)."""
    runs, n, classes = outputs.shape
    shape = (n,) if loss == "cross_entropy" else (n, classes)
    draw = torch.rand if loss == "cross_entropy" else torch.randn
    noise = torch.stack([draw(shape, generator=g, dtype=outputs.dtype) for g in generators])
    noise = noise.to(outputs.device, non_blocking=True)
    if loss != "cross_entropy":
        return outputs + noise
    cdf = outputs.softmax(-1).cumsum(-1)
    return torch.searchsorted(cdf, noise.unsqueeze(-1)).squeeze(-1).clamp_max(classes - 1)


# ---- mechanism 2: the Gauss-Newton norm and the Jacobian ---------------------------------------


def gauss_newton_norm(
    weights: Sequence[Tensor], factors: Sequence[tuple[Tensor, Tensor]]
) -> Tensor:
    """Σ_layers vec(W)ᵀ (A ⊗ G) vec(W) = Σ tr(Wᵀ G W A) per run (R,): θᵀĜθ, the regularizer that
    decoupled decay under K-FAC approximately minimizes (Zhang et al. 2019, §4; Grosse (2022),
    CSC 2541 lecture 5, mechanism 2). ``weights`` (R, out, in), or [W b] with A over [a, 1]."""
    return sum((W * (G @ W @ A)).sum((-2, -1)) for W, (A, G) in zip(weights, factors, strict=True))


def jacobian_norm_sq(weights: Sequence[Tensor]) -> Tensor:
    """‖J‖²_F per run (R,) for a linear network without biases, J = W_L ⋯ W_1 its input-output
    Jacobian (``weights`` from input to output).

    With whitened inputs (E[x xᵀ] = I) and gauss_newton factors, layer l has A = P Pᵀ
    (P = W_{l−1} ⋯ W_1) and G = Qᵀ Q (Q = W_L ⋯ W_{l+1}), so its term tr(Wᵀ G W A) is
    ‖Q W P‖²_F = ‖J‖²_F, and ``gauss_newton_norm`` = (number of weight matrices)·‖J‖²_F. Zhang et
    al. (2019) write the constant L + 1; it counts the weight matrices (their f is homogeneous of
    degree L + 1 in θ), which the lecture calls the number of layers."""
    J = weights[0]
    for W in weights[1:]:
        J = W @ J
    return J.pow(2).sum((-2, -1))
