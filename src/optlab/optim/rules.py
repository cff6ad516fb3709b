"""Update rules as pure functions over stacks with a leading run axis (DESIGN principle 4).

Every rule is ``update(param, grad, state, step, **hyper) -> (param, state)``: it
returns new tensors and mutates nothing. ``param`` and ``grad`` have shape (R, ...);
each hyperparameter is a number or an (R,) tensor, one value per run, so one call
updates R runs with R learning rates. ``step`` is t, counted from 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optlab.optim import decay as decay_rules
from optlab.optim.schedules import lr_equivalent_eps
from optlab.stacking import per_run

State = dict[str, Tensor]


def _adam_moments(
    grad: Tensor,
    state: State,
    step: int,
    beta1,
    beta2,
    eps,
    eps_lr_ratio=None,
    grad_sq: Tensor | None = None,
    amsgrad: bool = False,
) -> tuple[Tensor, State]:
    """m_t = β1 m + (1−β1) g; v_t = β2 v + (1−β2) g²; direction m̂/(√v̂ + ε), with
    m̂ = m_t/(1−β1^t) and v̂ = v_t/(1−β2^t) (Kingma & Ba 2014). With ``amsgrad``, v̂ is
    v^max_t/(1−β2^t), v^max_t = max(v^max_{t−1}, v_t) (Reddi, Kale & Kumar 2018, as
    torch.optim keeps it: the max of the uncorrected v). Given r_t = ``eps_lr_ratio``,
    ε is replaced by the per-coordinate ε_t = (r_t − 1)√v̂ + r_t ε of
    ``schedules.lr_equivalent_eps`` (the 2025 thesis notepad). ``grad_sq`` stands in for g² where v is
    kept per block (``variants.blockwise_adam``)."""
    n = grad.dim()
    b1, b2, eps = per_run(beta1, n), per_run(beta2, n), per_run(eps, n)
    m = b1 * state["exp_avg"] + (1 - b1) * grad
    v = b2 * state["exp_avg_sq"] + (1 - b2) * (grad * grad if grad_sq is None else grad_sq)
    state = {**state, "exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        state["max_exp_avg_sq"] = torch.maximum(state["max_exp_avg_sq"], v)
    m_hat = m / (1 - b1**step)
    v_hat = (state["max_exp_avg_sq"] if amsgrad else v) / (1 - b2**step)
    if eps_lr_ratio is not None:
        eps = lr_equivalent_eps(v_hat.sqrt(), eps, per_run(eps_lr_ratio, n))
    return m_hat / (v_hat.sqrt() + eps), state


def adam_init(param: Tensor, amsgrad: bool = False) -> State:
    """m_0 = v_0 = 0, and v^max_0 = 0 for ``amsgrad``."""
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
    return {k: param.new_zeros(param.shape) for k in names}


def adamw(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decay: str = "l2",
    eps_lr_ratio=None,
    amsgrad: bool = False,
    **decay_options,
) -> tuple[Tensor, State]:
    """AdamW (Loshchilov & Hutter 2017; Yu 2022 Algorithm 1) with a choice of decoupled decay:

    θ ← decay(θ_{t−1}, η, λ)  (l2: θ − ηλθ; l1: θ − ηλ·sign θ; min: θ − η·min|θ|·sign θ;
                              the stateful variants of ``decay.decoupled``)
    θ_t ← θ − η m̂_t/(√v̂_t + ε)  (v̂ from max_t v with ``amsgrad``, see ``_adam_moments``)
    """
    param, state = decay_rules.decoupled(
        decay, param, grad, state, lr, weight_decay, **decay_options
    )
    direction, state = _adam_moments(
        grad, state, step, beta1, beta2, eps, eps_lr_ratio, amsgrad=amsgrad
    )
    return param - per_run(lr, param.dim()) * direction, state


def adam(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    eps_lr_ratio=None,
    amsgrad: bool = False,
) -> tuple[Tensor, State]:
    """Adam (Kingma & Ba 2014) with coupled L2: g ← g + λθ; θ_t ← θ − η m̂_t/(√v̂_t + ε)
    (v̂ from max_t v with ``amsgrad``, see ``_adam_moments``)."""
    n = param.dim()
    grad = grad + per_run(weight_decay, n) * param
    direction, state = _adam_moments(
        grad, state, step, beta1, beta2, eps, eps_lr_ratio, amsgrad=amsgrad
    )
    return param - per_run(lr, n) * direction, state


def momentum_init(param: Tensor) -> State:
    return {"momentum_buffer": param.new_zeros(param.shape)}


def sgd(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    lr,
    momentum,
    weight_decay,
    nesterov: bool = False,
    dampening=0.0,
) -> tuple[Tensor, State]:
    """SGD with heavy-ball or Nesterov momentum and coupled decay (Sutskever et al. 2013),
    as torch.optim.SGD:

    g ← g + λθ;  b_t = μ b_{t−1} + (1−τ) g;  d = g + μ b_t (Nesterov) or b_t;  θ_t = θ − η d

    with dampening τ from t = 2 on: b_1 = g (torch.optim.SGD starts its buffer at g).
    """
    n = param.dim()
    mu = per_run(momentum, n)
    grad = grad + per_run(weight_decay, n) * param
    damp = 1 - per_run(dampening, n) if step > 1 else 1.0
    buf = mu * state["momentum_buffer"] + damp * grad
    direction = grad + mu * buf if nesterov else buf
    return param - per_run(lr, n) * direction, {"momentum_buffer": buf}


def rmsprop_init(param: Tensor) -> State:
    zeros = param.new_zeros
    return {
        "square_avg": zeros(param.shape),
        "grad_avg": zeros(param.shape),
        "momentum_buffer": zeros(param.shape),
    }


def rmsprop(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    lr,
    alpha,
    eps,
    weight_decay,
    momentum,
    centered: bool = False,
) -> tuple[Tensor, State]:
    """RMSprop (Hinton 2012, lecture 6e), as torch.optim.RMSprop:

    g ← g + λθ;  v_t = α v + (1−α) g²;  a = √(v_t − ḡ_t²) + ε if centered (ḡ_t = α ḡ + (1−α) g)
    else √v_t + ε;  b_t = μ b + g/a;  θ_t = θ − η b_t.
    """
    n = param.dim()
    a, mu = per_run(alpha, n), per_run(momentum, n)
    grad = grad + per_run(weight_decay, n) * param
    square_avg = a * state["square_avg"] + (1 - a) * grad * grad
    grad_avg = a * state["grad_avg"] + (1 - a) * grad if centered else state["grad_avg"]
    avg = (square_avg - grad_avg * grad_avg).sqrt() if centered else square_avg.sqrt()
    buf = mu * state["momentum_buffer"] + grad / (avg + per_run(eps, n))
    new_state = {"square_avg": square_avg, "grad_avg": grad_avg, "momentum_buffer": buf}
    return param - per_run(lr, n) * buf, new_state
