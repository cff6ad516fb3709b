"""Schedules: multipliers of a base value as a function of the step t (counted from 1).

A learning-rate schedule gives η_t = η·f(t) (the 2025 thesis notepad, "LR scheduler ideas"); an epsilon
schedule gives ε_t = ε·f(t) (the 2025 thesis notepad, "Epsilon Scheduler stuff": ε should grow where η
would shrink, e.g. at milestones); a batch schedule grows B_t with η/B fixed (the 2025 thesis notepad,
AdaBatch). Any ``Callable[[int], float]`` is a schedule; ``make_schedule`` builds the
named kinds of ``optlab.config.ScheduleSpec``. The factor is shared by every run of a
stacked group, so it multiplies an (R,) hyperparameter tensor as it multiplies a number.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Schedule = Callable[[int], float]
SCHEDULES = ("constant", "warmup", "cosine", "step", "li_arora")


def constant(t: int) -> float:
    return 1.0


def warmup(t: int, warmup_steps: int) -> float:
    """f(t) = min(1, t/T_w): linear warmup from η/T_w at step 1 to η at step T_w."""
    return min(1.0, t / warmup_steps) if warmup_steps > 0 else 1.0


def cosine(t: int, steps: int, warmup_steps: int = 0, final: float = 0.0) -> float:
    """Linear warmup, then f = final + (1 − final)·½(1 + cos(π·(t − 1 − T_w)/(T − T_w)))
    (Loshchilov & Hutter 2016, SGDR without restarts): 1 at the first step after warmup,
    approaching ``final`` at step T."""
    if t <= warmup_steps:
        return warmup(t, warmup_steps)
    progress = min(1.0, (t - 1 - warmup_steps) / max(1, steps - warmup_steps))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step(t: int, milestones: Sequence[int], gamma: float, warmup_steps: int = 0) -> float:
    """Linear warmup, then f(t) = γ^{#milestones m with m < t}: η drops (γ < 1), or ε
    grows (γ > 1), after each milestone step, as torch's MultiStepLR."""
    if t <= warmup_steps:
        return warmup(t, warmup_steps)
    return gamma ** bisect.bisect_left(sorted(milestones), t)


def li_arora(lr_decay: float, momentum: float) -> Schedule:
    """The exponentially growing η_t that stands in for weight decay on scale-invariant
    weights (Li and Arora 2020, Theorem 1.1), exact for torch.optim.SGD's momentum form.

    SGD with momentum γ and coupled decay λ at a constant η (b_t = γb_{t−1} + ∇L + λw,
    w_t = w_{t−1} − ηb_t, b_1 = ∇L + λw_0) is, for a loss with L(cw) = L(w), the same
    sequence of functions as SGD with momentum γ, no decay and η_t = η·f(t): the iterates
    satisfy w̃_t = c_t·w_t. Writing the decayed run as w_t = a·w_{t−1} − γ·w_{t−2} − η∇L(w_{t−1})
    with a = 1 + γ − ηλ and w_{−1} = w_0, and substituting w̃ = c·w (∇L(cw) = ∇L(w)/c) into
    the undecayed one, matches the two when c_t = 1/p_t and η_t = η·c_t·c_{t−1}, with

        p_t = a·p_{t−1} − γ·p_{t−2},  p_{−1} = p_0 = 1,   f(t) = 1/(p_t·p_{t−1}).

    p_t → A·α^t for the larger root α of x² − (1 + γ − ηλ)x + γ = 0, so f(t) ∝ α^{−2t}: the
    paper's η̃_t = α^{−2t−1}η, here with the first steps exact. Without momentum,
    f(t) = (1 − ηλ)^{−(2t−1)}. ``lr_decay`` is the product ηλ of the decay replaced.
    """
    a, p = 1 + momentum - lr_decay, [1.0, 1.0]  # p_{t−1}, p_t from t = 0

    def f(t: int) -> float:
        while len(p) <= t + 1:
            p.append(a * p[-1] - momentum * p[-2])
        return 1.0 / (p[t + 1] * p[t])

    return f


def make_schedule(spec, steps: int) -> Schedule:
    """The schedule named by ``spec`` (an ``optlab.config.ScheduleSpec``); ``steps`` is the
    cosine's horizon T."""
    kind, w = spec.kind, spec.warmup
    if kind == "constant":
        return constant
    if kind == "warmup":
        return lambda t: warmup(t, w)
    if kind == "cosine":
        if steps <= 0:
            raise ValueError("a cosine schedule needs its horizon: set its steps")
        return lambda t: cosine(t, steps, w, spec.final)
    if kind == "step":
        milestones = at_steps(spec.milestones, steps)
        return lambda t: step(t, milestones, spec.gamma, w)
    if kind == "li_arora":
        return li_arora(spec.lr_decay, spec.momentum)
    raise ValueError(f"schedule kind {kind!r}; valid: {', '.join(SCHEDULES)}")


def optimizer_schedules(spec, steps: int | None) -> tuple[Schedule, Schedule, Schedule | None]:
    """For an ``OptimizerSpec`` over ``steps`` steps: η's factor, ε's factor, and r_t = η/η_t
    where ``eps_schedule`` is ``lr_equivalent`` (else None). ``lr_equivalent`` realises the
    learning-rate schedule through ε, so η's factor is then 1 (and AdamW's decoupled decay,
    ηλθ, sees the constant η: the equivalence is exact for the Adam step)."""
    lr = make_schedule(spec.lr_schedule, spec.lr_schedule.steps or steps or 0)
    if spec.eps_schedule.kind == "lr_equivalent":
        return constant, constant, lambda t: 1.0 / lr(t)
    return lr, make_schedule(spec.eps_schedule, spec.eps_schedule.steps or steps or 0), None


def lr_equivalent_eps(sqrt_v_hat: Tensor, eps, ratio) -> Tensor:
    """ε_t = (r_t − 1)·√v̂_t + r_t·ε with r_t = η/η_t (the 2025 thesis notepad, "Epsilon Scheduler stuff").

    With this per-coordinate ε_t, η·m̂/(√v̂ + ε_t) = η_t·m̂/(√v̂ + ε): Adam at a constant η
    takes exactly the steps that the learning-rate schedule η_t would give it.
    """
    return (ratio - 1) * sqrt_v_hat + ratio * eps


def batch_sizes(batch_size: int, milestones: Sequence[float], factor: int, steps: int) -> list[int]:
    """B_t for t = 1..T: B·factor^{#milestones m with m < t} (AdaBatch, Devarakonda et al.
    2017, in the 2025 thesis notepad). The engine scales η_t by B_t/B so that η/B stays fixed."""
    ms = at_steps(milestones, steps)
    return [batch_size * int(step(t, ms, factor)) for t in range(1, steps + 1)]


def at_steps(milestones: Sequence[float], steps: int) -> list[int]:
    """Milestones as steps: m ≥ 1 is step m; 0 < m < 1 is the fraction m of ``steps``, so one
    spec keeps its shape at every training length."""
    if any(m < 1 for m in milestones) and steps <= 0:
        raise ValueError("fractional milestones need the schedule's horizon: set its steps")
    return [int(m) if m >= 1 else round(m * steps) for m in milestones]


class LambdaEps:
    """ε_t = ε·f(t) for any torch.optim optimizer with an ``eps`` setting, as torch's LambdaLR
    does for η: call ``step()`` after each ``optimizer.step()``. ``f`` is any schedule, e.g.
    ``lambda t: step(t, [1000], 100.0)``."""

    def __init__(self, optimizer: torch.optim.Optimizer, f: Schedule) -> None:
        self.optimizer, self.f, self.t = optimizer, f, 0
        self.base = [group["eps"] for group in optimizer.param_groups]
        self.step()

    def step(self) -> None:
        """Set ε for the optimizer's next step, t + 1."""
        self.t += 1
        for group, eps in zip(self.optimizer.param_groups, self.base, strict=True):
            group["eps"] = eps * self.f(self.t)
