"""A fast path equal to ``rules.adamw``: one fused in-place kernel per tensor.

When the decay is ``l2`` or ``none`` (and ε is not tied to η), the AdamW step of Yu 2022 Algorithm 1,

    θ ← θ − ηλθ;  m_t = β1 m + (1−β1) g;  v_t = β2 v + (1−β2) g²;
    θ_t = θ − η m̂_t/(√v̂_t + ε),  m̂ = m_t/(1−β1^t),  v̂ = v_t/(1−β2^t),

is what ``torch._fused_adamw_`` computes, in one pass over each tensor and its state
instead of the pure rule's dozen allocating passes: one call for the runs of a stack that
share their numbers, each run's tensors as views of their own (``engine.optimizer``), so
that a run's result is bitwise the same in a stack as alone. ``rules.adamw`` stays the
definition; tests/optim/test_fused.py holds the two equal.

The kernel is private: a torch release may drop it, leave a dtype or device out, or change
what its arguments mean. So it runs only where it exists and one step of it agrees with
``rules.adamw`` (``kernel_agrees``, checked once per process, dtype and device); elsewhere
``fused_adamw_`` takes the same step by the pure rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from optlab.optim import rules
from optlab.optim.rules import State

FUSED_KEYS = ("lr", "beta1", "beta2", "eps", "weight_decay")


def run_numbers(hyper: dict, runs: int) -> list[dict[str, float]] | None:
    """Each run's η, β1, β2, ε, λ as floats if the AdamW hyperparameters ``hyper`` fit the
    fused path (decay l2 or none, no ε schedule tied to η); else None."""
    if hyper.get("decay", "l2") not in ("l2", "none") or "eps_lr_ratio" in hyper:
        return None
    columns = {}
    for key in FUSED_KEYS:
        value = hyper[key]
        values = value.tolist() if isinstance(value, Tensor) else [value] * runs
        columns[key] = [float(v) for v in values]
    if hyper.get("decay") == "none":
        columns["weight_decay"] = [0.0] * runs
    return [{k: v[r] for k, v in columns.items()} for r in range(runs)]


def fused_adamw_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[State],
    step: Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Step t (a 0-d tensor on the parameters' device) of AdamW, in place on ``params`` and
    their states (``exp_avg``, ``exp_avg_sq``): by the kernel where it agrees with the rule
    for the parameters' dtype and device, else by ``rules.adamw`` tensor by tensor."""
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
    if all(kernel_agrees(p.dtype, p.device) for p in params):
        _kernel(params, grads, states, step, hyper)
        return
    t = int(step)
    for p, g, s in zip(params, grads, states, strict=True):
        new_p, new_s = rules.adamw(p, g, s, t, **hyper)
        p.copy_(new_p)
        for k, v in new_s.items():
            s[k].copy_(v)


@functools.cache
def kernel_agrees(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``torch._fused_adamw_`` runs on ``dtype`` tensors on ``device`` and its step
    t = 3 from a nonzero state equals ``rules.adamw``'s (in float64, from the same numbers)
    within 4 machine epsilons of ``dtype``. With η = λ = 0.5 and ε = 1 against √v̂ of 0 to 6,
    a changed decay, bias correction or placement of ε misses by far more."""
    gen = torch.Generator().manual_seed(0)

    def draw(sample: Callable) -> Tensor:  # float64 numbers that ``dtype`` holds exactly
        return sample(2, 8, generator=gen, dtype=torch.float64).to(dtype).double()

    param, grad = draw(torch.randn), draw(torch.randn)
    state = {"exp_avg": draw(torch.randn), "exp_avg_sq": draw(torch.rand)}
    hyper = dict(lr=0.5, beta1=0.9, beta2=0.99, eps=1.0, weight_decay=0.5)
    expected, expected_state = rules.adamw(param, grad, state, 3, **hyper)
    fused = param.to(device, dtype, copy=True)
    fused_state = {k: v.to(device, dtype, copy=True) for k, v in state.items()}
    step = torch.tensor(3.0, device=device)
    try:
        _kernel([fused], [grad.to(device, dtype)], [fused_state], step, hyper)
    except (AttributeError, TypeError, RuntimeError, NotImplementedError):
        return False  # no such kernel, another signature, or none for this dtype or device
    tol = 4 * torch.finfo(dtype).eps
    pairs = [(fused, expected)] + [(fused_state[k], v) for k, v in expected_state.items()]
    return all(torch.allclose(a.cpu().double(), b, rtol=tol, atol=tol) for a, b in pairs)


def _kernel(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[State],
    step: Tensor,
    hyper: dict[str, float],
) -> None:
    torch._fused_adamw_(
        list(params),
        [g.contiguous() for g in grads],  # the kernel walks raw memory: strides must match
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        [step] * len(params),  # read, not advanced, by the kernel
        **hyper,
        amsgrad=False,
        maximize=False,
    )
