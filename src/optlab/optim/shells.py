"""``torch.optim.Optimizer`` shells over the pure rules: drop-ins for torch.optim's classes.

A shell validates arguments, holds ``param_groups`` and ``state`` (with torch's state
names, so ``state_dict`` round-trips), and calls its rule on each parameter as a
stack of one run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

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


def _check_lr(lr: float | Tensor) -> None:
    one = not isinstance(lr, Tensor) or lr.numel() == 1
    _check("lr", lr, one, "a number or a 1-element tensor")
    _nonnegative(lr=lr)


def _accepted(fn: Callable, values: dict) -> dict:
    """The entries of ``values`` that ``fn`` takes as keyword arguments."""
    names = inspect.signature(fn).parameters
    return {k: v for k, v in values.items() if k in names}


class RuleOptimizer(torch.optim.Optimizer):
    """Applies its rule (from ``optlab.optim.rules``) to every parameter with a grad, as a
    stack of one run; a tensor hyperparameter (a tensor ``lr``) is that run's value.

    torch.optim's kernel options are accepted with torch's meaning where it is about the
    numbers: ``maximize`` steps on −g, and ``differentiable`` runs the step with autograd on,
    so a parameter that is not a leaf keeps the step in its graph. ``foreach`` and ``fused``
    choose among torch's kernels and change nothing here (every step is the pure rule), and
    ``capturable`` neither: the step count is read on the host, so a step syncs and cannot be
    captured in a CUDA graph.
    """

    update: Callable
    init_state: Callable

    def rule(self, group: dict) -> Callable:
        """The update rule of ``group``."""
        return type(self).update

    def hyper(self, group: dict) -> dict:
        """The group's settings as the rule's keyword arguments (betas split into beta1, beta2)."""
        values = dict(group)
        if "betas" in group:
            values["beta1"], values["beta2"] = group["betas"]
        values = {k: v.reshape(1) if isinstance(v, Tensor) else v for k, v in values.items()}
        return _accepted(self.rule(group), values)

    def __setstate__(self, state: dict) -> None:
        """Options a loaded state lacks (torch.optim's, or an older optlab's) take their defaults."""
        super().__setstate__(state)
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        rule, hyper = self.rule(group), self.hyper(group)
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state.update(self.init_state(p, **_accepted(self.init_state, group)))
            state["step"] += 1
            grad = -p.grad if group["maximize"] else p.grad
            tensors = {k: v[None] for k, v in state.items() if k != "step"}
            new_p, new_state = rule(p[None], grad[None], tensors, int(state["step"]), **hyper)
            p.copy_(new_p[0])
            state.update({k: v[0] for k, v in new_state.items()})


class Adam(RuleOptimizer):
    """Drop-in for ``torch.optim.Adam``: coupled L2 (``rules.adam``), or with
    ``decoupled_weight_decay`` the decoupled l2 of ``rules.adamw``, as torch's."""

    init_state = staticmethod(rules.adam_init)

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_adam(lr, betas, eps, weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def rule(self, group: dict) -> Callable:
        return rules.adamw if group["decoupled_weight_decay"] else rules.adam


class AdamW(RuleOptimizer):
    """Drop-in for ``torch.optim.AdamW`` with a choice of decoupled decay (see ``rules.adamw``)."""

    update = staticmethod(rules.adamw)
    init_state = staticmethod(rules.adam_init)

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decay: str = "l2",
    ) -> None:
        _check_adam(lr, betas, eps, weight_decay)
        _check("decay", decay, decay in DECAYS, f"one of {', '.join(DECAYS)}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decay=decay,
        )
        super().__init__(params, defaults)


class SGD(RuleOptimizer):
    """Drop-in for ``torch.optim.SGD`` (see ``rules.sgd``). As torch's, it keeps no momentum
    where μ = 0, so dampening applies only with momentum."""

    update = staticmethod(rules.sgd)
    init_state = staticmethod(rules.momentum_init)

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float | Tensor = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        _nonnegative(momentum=momentum, weight_decay=weight_decay)
        _check(
            "nesterov",
            nesterov,
            not nesterov or (momentum > 0 and dampening == 0),
            "needs momentum > 0 and dampening 0",
        )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)

    def hyper(self, group: dict) -> dict:
        hyper = super().hyper(group)
        if group["momentum"] == 0:
            hyper["dampening"] = 0.0
        return hyper


class RMSprop(RuleOptimizer):
    """Drop-in for ``torch.optim.RMSprop`` (see ``rules.rmsprop``)."""

    update = staticmethod(rules.rmsprop)
    init_state = staticmethod(rules.rmsprop_init)

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_lr(lr)
        _nonnegative(eps=eps, weight_decay=weight_decay, momentum=momentum)
        _check("alpha", alpha, 0 <= alpha <= 1, "in [0, 1]")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)


def _check_adam(lr: float | Tensor, betas: tuple, eps: float, weight_decay: float) -> None:
    _check_lr(lr)
    _nonnegative(eps=eps, weight_decay=weight_decay)
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
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
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
