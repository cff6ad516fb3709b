"""``torch.optim.Optimizer`` shells over the pure rules: drop-ins for torch.optim's classes.

A shell validates arguments, holds ``param_groups`` and ``state`` (with torch's state
names, so ``state_dict`` round-trips), and calls its rule on each parameter as a
stack of one run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch

from optlab.optim import rules
from optlab.optim.apply import at_step, tree_step, with_generators
from optlab.optim.decay import DECAYS
from optlab.optim.schedules import optimizer_schedules


def _check(name: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {value!r} is not allowed: {allowed}")


def _nonnegative(**values: float) -> None:
    for name, value in values.items():
        _check(name, value, value >= 0, ">= 0")


class RuleOptimizer(torch.optim.Optimizer):
    """Applies ``update`` (a rule from ``optlab.optim.rules``) to every parameter with a grad."""

    update: Callable
    init_state: Callable

    def hyper(self, group: dict) -> dict:
        """The group's settings as the rule's keyword arguments (betas split into beta1, beta2)."""
        names = inspect.signature(type(self).update).parameters
        out = {k: v for k, v in group.items() if k in names}
        if "betas" in group:
            out["beta1"], out["beta2"] = group["betas"]
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hyper = self.hyper(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state.update(self.init_state(p))
                state["step"] += 1
                tensors = {k: v[None] for k, v in state.items() if k != "step"}
                new_p, new_state = type(self).update(
                    p[None], p.grad[None], tensors, int(state["step"]), **hyper
                )
                p.copy_(new_p[0])
                state.update({k: v[0] for k, v in new_state.items()})
        return loss


class AdamW(RuleOptimizer):
    """Drop-in for ``torch.optim.AdamW`` with a choice of decoupled decay (see ``rules.adamw``)."""

    update = staticmethod(rules.adamw)
    init_state = staticmethod(rules.adam_init)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        decay: str = "l2",
    ) -> None:
        _check_adam(lr, betas, eps, weight_decay)
        _check("decay", decay, decay in DECAYS, f"one of {', '.join(DECAYS)}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decay=decay)
        super().__init__(params, defaults)


class Adam(RuleOptimizer):
    """Drop-in for ``torch.optim.Adam`` (coupled L2; see ``rules.adam``)."""

    update = staticmethod(rules.adam)
    init_state = staticmethod(rules.adam_init)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check_adam(lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))


class SGD(RuleOptimizer):
    """Drop-in for ``torch.optim.SGD`` without dampening (see ``rules.sgd``)."""

    update = staticmethod(rules.sgd)
    init_state = staticmethod(rules.momentum_init)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        _nonnegative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        _check("nesterov", nesterov, not nesterov or momentum > 0, "needs momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)


class RMSprop(RuleOptimizer):
    """Drop-in for ``torch.optim.RMSprop`` (see ``rules.rmsprop``)."""

    update = staticmethod(rules.rmsprop)
    init_state = staticmethod(rules.rmsprop_init)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        _nonnegative(lr=lr, eps=eps, weight_decay=weight_decay, momentum=momentum)
        _check("alpha", alpha, 0 <= alpha <= 1, "in [0, 1]")
        keys = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )
        super().__init__(params, keys)


def _check_adam(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    _nonnegative(lr=lr, eps=eps, weight_decay=weight_decay)
    _check("betas", betas, all(0 <= b < 1 for b in betas), "each in [0, 1)")


class RuleShell(torch.optim.Optimizer):
    """A torch.optim shell over ``rule`` (one of ``OPTIMIZERS``), built from an ``OptimizerSpec``
    (use ``optlab.config.make_optimizer``): its hyperparameters, schedules and decay as in the engine.

    All parameters of a group step together (one step count, one call of the rule's tree
    step, so a global graft sees them all). ``steps`` is the horizon of a cosine schedule
    that does not set its own; ``seed`` seeds decay dropout's generator.
    """

    def __init__(
        self, params: Iterable, spec, rule, steps: int | None = None, seed: int = 0
    ) -> None:
        self.spec, self.rule = spec, rule
        self.lr_factor, self.eps_factor, self.eps_lr_ratio = optimizer_schedules(spec, steps)
        self.generators = [torch.Generator().manual_seed(seed)]
        defaults = self.rule.hyper(spec)
        self.hyper_keys = tuple(defaults)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            live = {str(i): p for i, p in enumerate(group["params"]) if p.grad is not None}
            if not live:
                continue
            for p in live.values():
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state.update(self.rule.init(p))
                state["step"] = state["step"] + 1  # not in place: a loaded state may share it
            t = int(self.state[next(iter(live.values()))]["step"])
            ratio = None if self.eps_lr_ratio is None else self.eps_lr_ratio(t)
            hyper = {k: group[k] for k in self.hyper_keys}
            hyper = at_step(hyper, self.lr_factor(t), self.eps_factor(t), ratio)
            hyper = with_generators(hyper, self.generators)
            states = {
                k: {n: v[None] for n, v in self.state[p].items() if n != "step"}
                for k, p in live.items()
            }
            new_params, new_states = tree_step(
                self.rule,
                {k: p[None] for k, p in live.items()},
                {k: p.grad[None] for k, p in live.items()},
                states,
                t,
                dict.fromkeys(live, hyper),
            )
            for k, p in live.items():
                p.copy_(new_params[k][0])
                self.state[p].update({n: v[0] for n, v in new_states[k].items()})
        return loss
