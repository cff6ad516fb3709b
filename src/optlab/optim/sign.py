"""Sign methods (the 2025 thesis notepad: "Adam chooses the infinity norm and kind of so does SignSGD")."""

from __future__ import annotations

from torch import Tensor

from optlab.optim import decay as decay_rules
from optlab.optim.rules import State
from optlab.stacking import per_run


def signsgd(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    lr,
    weight_decay,
    decay: str = "l2",
    **decay_options,
) -> tuple[Tensor, State]:
    """signSGD (Bernstein et al. 2018, in the 2025 thesis notepad): θ ← decay(θ_{t−1}); θ_t = θ − η·sign g_t."""
    param, state = decay_rules.decoupled(
        decay, param, grad, state, lr, weight_decay, **decay_options
    )
    return param - per_run(lr, param.dim()) * grad.sign(), state


def signum_init(param: Tensor) -> State:
    return {"exp_avg": param.new_zeros(param.shape)}


def signum(
    param: Tensor,
    grad: Tensor,
    state: State,
    step: int,
    *,
    lr,
    beta1,
    weight_decay,
    decay: str = "l2",
    **decay_options,
) -> tuple[Tensor, State]:
    """Signum, the sign of momentum (Bernstein et al. 2018, in the 2025 thesis notepad):

    m_t = β1 m_{t−1} + (1−β1) g_t,   θ ← decay(θ_{t−1}),   θ_t = θ − η·sign m_t
    """
    param, state = decay_rules.decoupled(
        decay, param, grad, state, lr, weight_decay, **decay_options
    )
    n = param.dim()
    b1 = per_run(beta1, n)
    m = b1 * state["exp_avg"] + (1 - b1) * grad
    return param - per_run(lr, n) * m.sign(), {**state, "exp_avg": m}
