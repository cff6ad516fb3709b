"""Adam variants from the thesis notepad (the 2025 thesis notepad), as pure rules over run stacks.

Each has the signature of ``rules.adamw`` (decoupled decay of any kind in
``optlab.optim.decay``, applied to θ_{t−1} first) and reads v as Adam does:
v_t = β2 v + (1−β2) g², v̂_t = v_t/(1−β2^t).
"""

from __future__ import annotations

from torch import Tensor

from optlab.optim import decay as decay_rules
from optlab.optim.rules import State, _adam_moments
from optlab.stacking import per_run

BIAS_CORRECTIONS = ("none", "standard", "exact")
BLOCKS = ("tensor", "row", "column", "block")


def nested_init(param: Tensor) -> State:
    zeros = param.new_zeros
    return {
        "exp_avg": zeros(param.shape),
        "exp_avg_sq": zeros(param.shape),
        "weight_sum": zeros(param.shape),
    }


def nested_adam(
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
    bias_correction: str = "standard",
    **decay_options,
) -> tuple[Tensor, State]:
    """Nested moving-average Adam (the 2025 thesis notepad, "Coupling of momentum and RMS"): normalise first,
    then average,

    x_t = g_t/√(v̂_t + ε),   K_t = β1 K_{t−1} + (1−β1) x_t,   θ_t = θ − η K̂_t

    with K̂_t = K_t (none), K_t/(1−β1^t) (standard), or K_t/(W_t √(v̂_t + ε)) (exact), where
    W_t = β1 W_{t−1} + (1−β1)/√(v̂_t + ε) is the sum of the weights that K_t actually put on
    the gradients: exact divides out what the per-step normalisers did to the geometric sum,
    and equals standard whenever v̂ stays constant. β1 = 0 is RMSprop with a bias-corrected v.
    """
    param, state = decay_rules.decoupled(
        decay, param, grad, state, lr, weight_decay, **decay_options
    )
    n = param.dim()
    b1, b2, eps = per_run(beta1, n), per_run(beta2, n), per_run(eps, n)
    v = b2 * state["exp_avg_sq"] + (1 - b2) * grad * grad
    norm = (v / (1 - b2**step) + eps).sqrt()
    k = b1 * state["exp_avg"] + (1 - b1) * grad / norm
    w = b1 * state["weight_sum"] + (1 - b1) / norm if bias_correction == "exact" else None
    if bias_correction == "none":
        k_hat = k
    elif bias_correction == "standard":
        k_hat = k / (1 - b1**step)
    elif bias_correction == "exact":
        k_hat = k / (w * norm)
    else:
        raise ValueError(
            f"bias_correction {bias_correction!r}; valid: {', '.join(BIAS_CORRECTIONS)}"
        )
    new_state = {**state, "exp_avg": k, "exp_avg_sq": v}
    if w is not None:
        new_state["weight_sum"] = w
    return param - per_run(lr, n) * k_hat, new_state


def block_mean(x: Tensor, blocks: str, block_size: int = 1) -> Tensor:
    """The mean of x over each block of each run's tensor, broadcast back to x's shape.

    tensor: one block per tensor; row: one per index of the first axis after the run axis
    (an output unit of a torch (out, in) weight); column: one per index of the last axis
    (an output unit of optlab's (in, out) weights); block: consecutive runs of ``block_size``
    entries of the flattened tensor (the last one shorter if need be).
    """
    n = x.dim()
    if blocks == "tensor":
        return x.mean(dim=tuple(range(1, n)), keepdim=True).expand_as(x) if n > 1 else x
    if blocks == "row":
        return x.mean(dim=tuple(range(2, n)), keepdim=True).expand_as(x) if n > 2 else x
    if blocks == "column":
        return x.mean(dim=tuple(range(1, n - 1)), keepdim=True).expand_as(x) if n > 2 else x
    if blocks == "block":
        flat = x.reshape(x.shape[0], -1)
        size = flat.shape[1]
        pad = (-size) % block_size
        padded = flat.new_zeros(flat.shape[0], size + pad)
        padded[:, :size] = flat
        counts = flat.new_full((size + pad,), 1.0)
        counts[size:] = 0.0
        sums = padded.view(flat.shape[0], -1, block_size).sum(-1)
        means = sums / counts.view(-1, block_size).sum(-1)
        return means.repeat_interleave(block_size, dim=1)[:, :size].reshape(x.shape)
    raise ValueError(f"blocks {blocks!r}; valid: {', '.join(BLOCKS)}")


def blockwise_adam(
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
    blocks: str = "tensor",
    block_size: int = 1,
    **decay_options,
) -> tuple[Tensor, State]:
    """Adam with one second moment per block (the Adam-mini idea, Zhang et al. 2024, in
    the 2025 thesis notepad): for each block B of ``block_mean``,

    v_B = β2 v_B + (1−β2)·mean_{i∈B} g_i²,   θ_t = θ − η m̂_t/(√v̂_B + ε)

    v is stored broadcast to the parameter's shape, so the state has Adam's names and shapes
    (the point here is the dynamics, not Adam-mini's memory saving).
    """
    param, state = decay_rules.decoupled(
        decay, param, grad, state, lr, weight_decay, **decay_options
    )
    grad_sq = block_mean(grad * grad, blocks, block_size)
    direction, state = _adam_moments(grad, state, step, beta1, beta2, eps, grad_sq=grad_sq)
    return param - per_run(lr, param.dim()) * direction, state


def harmonic_adam(
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
    **decay_options,
) -> tuple[Tensor, State]:
    """The harmonic-mean step (the 2025 thesis notepad, January 2025): with Adam's step a = m̂_t/(√v̂_t + ε),
    each coordinate moves by the harmonic combination of |a| and η_t, in Adam's direction,

    θ_t = θ − sign(a)/(1/|a| + 1/η_t) = θ − η_t·a/(η_t + |a|)

    so the step is ≈ a where |a| ≪ η_t and ≈ η_t·sign(a) where |a| ≫ η_t: 1/η_t plays ε's part.
    """
    param, state = decay_rules.decoupled(
        decay, param, grad, state, lr, weight_decay, **decay_options
    )
    a, state = _adam_moments(grad, state, step, beta1, beta2, eps)
    eta = per_run(lr, param.dim())
    return param - eta * a / (eta + a.abs()), state
