"""The engine's optimizer: one rule applied to a group of R stacked runs.

Built-in rules get each run's numeric hyperparameters as (R,) tensors; at each step the
group's schedules scale η and ε (and η follows the batch size, B_t/B, when the batch
grows: the group's schedule, or each run's own under a batch controller), decay groups
give matching parameters their own λ, and decay dropout draws from each run's own
generator. An optimizer named by import path runs as ``torch.optim``
would, on groups of one run (the engine groups such runs alone, since an arbitrary
optimizer may mix the runs of a stack).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from optlab.optim import OPTIMIZERS, resolve_import_path
from optlab.optim.apply import (
    at_step,
    tree_step,
    with_generators,
    with_weight_decay,
    without_weight_decay,
)
from optlab.optim.fused import fused_adamw_, kernel_agrees, run_numbers
from optlab.optim.groups import weight_decay_for
from optlab.optim.kfac import update_factors
from optlab.optim.schedules import optimizer_schedules

DECAY_SALT = 0xDECA  # keeps decay dropout's stream apart from the init and sampling streams


@dataclass(frozen=True)
class _FusedCall:
    """One ``fused_adamw_`` call of every step, its arguments built once: the numbers its
    runs share, which (tensor, run) gradients it reads, views of each run's parameters and
    Adam states it updates in place, and the step count t on their device."""

    numbers: dict[str, float]
    run: int | None  # the one run of the call, where each run's η has its own factor
    grads: list[tuple[int, int]]  # (position among the gradients, run)
    params: list[Tensor]
    states: list[dict[str, Tensor]]
    step: Tensor


def fusable(spec, steps: int | None) -> bool:
    """Whether an ``OptimizerSpec``'s update is the fused AdamW kernel's: adamw with decay
    l2 or none and no ε tied to η (the kernel itself then runs where it agrees with the rule)."""
    tied_eps = optimizer_schedules(spec, steps)[2] is not None
    return spec.name == "adamw" and spec.decay in ("l2", "none") and not tied_eps


def update_path(spec, steps: int, dtype: torch.dtype, device: torch.device) -> str:
    """How an ``OptimizerSpec``'s update is computed, for a run's numeric path: the fused
    AdamW kernel (where ``fusable`` and the kernel agrees with the rule on this dtype and
    device), the pure rule, or a torch.optim class."""
    if spec.name not in OPTIMIZERS:
        return f"torch.optim {spec.name}"
    if fusable(spec, steps) and kernel_agrees(dtype, device):
        return "fused adamw"
    return f"pure {spec.name}"


class StackedOptimizer:
    def __init__(
        self,
        specs: Sequence,
        params: dict[str, Tensor],
        steps: int | None = None,
        seeds: Sequence[int] | None = None,
        batch_sizes: Sequence[int] | None = None,
        per_run_lr: bool = False,
    ) -> None:
        """``batch_sizes``: the group's B_t, which η follows; ``per_run_lr``: each run's η
        also takes its own factor (``set_run_lr``), as a batch controller grows its batch."""
        self.params = params
        self.t = 0
        runs = next(iter(params.values())).shape[0] if params else len(specs)
        self.run_lr = [1.0] * runs if per_run_lr else None
        self._run_lr_tensor: Tensor | None = None
        spec = specs[0]
        self.lr_factor, self.eps_factor, self.eps_lr_ratio = optimizer_schedules(spec, steps)
        self.batch_sizes = batch_sizes
        if spec.name in OPTIMIZERS:
            self.rule = OPTIMIZERS[spec.name]
            hyper = _stack_hyper([self.rule.hyper(s) for s in specs], params)
            seeds = seeds if seeds is not None else range(len(specs))
            hyper = with_generators(
                hyper, [torch.Generator().manual_seed(s ^ DECAY_SALT) for s in seeds]
            )
            self.hypers = {}
            for name in params:
                group_decay = weight_decay_for(name, spec.decay_groups)
                self.hypers[name] = (
                    hyper if group_decay is None else with_weight_decay(hyper, group_decay)
                )
            self.state = {k: self.rule.init(p) for k, p in params.items()}
            self.torch_optimizer = None
            self.fused = self._fused_groups() if fusable(spec, steps) and params else None
        else:
            (spec,) = specs  # one run per group
            cls = resolve_import_path(spec.name)
            self.torch_optimizer = cls(list(params.values()), **spec.torch_arguments())
            self.base_lr = spec.lr
            self.fused = None

    @torch.no_grad()
    def fold_curvature(self, layers: dict[str, tuple[Tensor, Tensor]]) -> None:
        """K-FAC: fold each Linear layer's inputs a and per-example output gradients g of this
        step into the running Kronecker factors its weight's state keeps (a frozen layer,
        which has no state, is passed over)."""
        for prefix, (a, g) in layers.items():
            name = f"{prefix}weight"
            if name in self.state:
                bias = f"{prefix}bias" in self.params
                decay = self.hypers[name]["factor_decay"]
                self.state[name] = update_factors(self.state[name], a, g, decay, bias)

    def set_run_lr(self, factors: Sequence[float]) -> None:
        """Each run's own factor on η from the next step on (``per_run_lr``)."""
        self.run_lr = list(factors)
        any_param = next(iter(self.params.values()))
        self._run_lr_tensor = torch.tensor(
            self.run_lr, dtype=any_param.dtype, device=any_param.device
        )

    def lr_scale(self, t: int) -> float:
        """η_t/η at step t: the schedule's factor times B_t/B (AdaBatch: η/B stays fixed)."""
        batch = self.batch_sizes[t - 1] / self.batch_sizes[0] if self.batch_sizes else 1.0
        return self.lr_factor(t) * batch

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """Apply one update in place to the stacked parameters, given their gradients."""
        self.t += 1
        if self.torch_optimizer is not None:
            for p, g in zip(self.params.values(), grads, strict=True):
                p.grad = g
            own = self.run_lr[0] if self.run_lr else 1.0  # a group of one run
            for group in self.torch_optimizer.param_groups:
                group["lr"] = self.base_lr * self.lr_scale(self.t) * own
            self.torch_optimizer.step()
            return
        if self.fused is not None:
            self._fused_step(grads)
            return
        new_params, self.state = tree_step(
            self.rule,
            self.params,
            dict(zip(self.params, grads, strict=True)),
            self.state,
            self.t,
            self.hypers_at(self.t),
        )
        for name, p in self.params.items():
            p.copy_(new_params[name])

    def _fused_groups(self) -> list[_FusedCall] | None:
        """The ``fused_adamw_`` calls of a step of ``fusable`` runs, one per set of numbers its
        runs share (None where a tensor's numbers do not fit the kernel). Each run's tensors
        go to the kernel as views of their own: a kernel walks a tensor in vector-wide blocks
        and a scalar tail, so a whole stack would put a run's numbers in a block or the tail
        by its place in the stack, and its result would depend (in the last bit, which a
        chaotic run amplifies) on the runs it was stacked with. Run by run it does not."""
        runs = next(iter(self.params.values())).shape[0]
        order = list(self.params)
        groups: dict[tuple, tuple[dict[str, float], list[tuple[str, int]]]] = {}
        for tensor, hyper in self.hypers.items():
            per_run = run_numbers(hyper, runs)
            if per_run is None:
                return None
            for r, numbers in enumerate(per_run):
                key = (r if self.run_lr else None, *numbers.values())
                groups.setdefault(key, (numbers, []))[1].append((tensor, r))
        return [
            _FusedCall(
                numbers,
                key[0],
                [(order.index(k), r) for k, r in views],
                [self.params[k].detach()[r] for k, r in views],
                [{n: v[r] for n, v in self.state[k].items()} for k, r in views],
                torch.zeros((), device=self.params[order[0]].device),
            )
            for key, (numbers, views) in groups.items()
        ]

    def _fused_step(self, grads: Sequence[Tensor]) -> None:
        """The same step as the pure rule, in place, η and ε scaled by their schedules."""
        lr_scale, eps_scale = self.lr_scale(self.t), self.eps_factor(self.t)
        for call in self.fused:
            call.step.fill_(self.t)  # on the parameters' device: no host sync
            own = 1.0 if call.run is None else self.run_lr[call.run]
            fused_adamw_(
                call.params,
                [grads[i][r] for i, r in call.grads],
                call.states,
                call.step,
                **{
                    **call.numbers,
                    "lr": call.numbers["lr"] * lr_scale * own,
                    "eps": call.numbers["eps"] * eps_scale,
                },
            )

    def hypers_at(self, t: int) -> dict[str, dict]:
        """Per tensor, the hyperparameters of step t: η and ε scaled by their schedules."""
        return {k: self._at(h, t) for k, h in self.hypers.items()}

    def _at(self, hyper: dict, t: int) -> dict:
        ratio = None if self.eps_lr_ratio is None else self.eps_lr_ratio(t)
        lr = self.lr_scale(t)
        if self._run_lr_tensor is not None:
            lr = lr * self._run_lr_tensor
        return at_step(hyper, lr, self.eps_factor(t), ratio)

    @property
    def step_degree(self) -> int | None:
        """k in Δθ(c·g) = c^k·Δθ(g) of the rule (``Rule.step_degree``; a graft's is its
        magnitude child's); None for an optimizer named by import path."""
        if self.torch_optimizer is not None:
            return None
        if self.rule.step_degree is not None or not self.hypers:
            return self.rule.step_degree
        magnitude = next(iter(self.hypers.values()))["magnitude"]["rule"]
        return OPTIMIZERS[magnitude].step_degree

    def hyper_for(self, name: str) -> dict:
        """The hyperparameters the last step applied to tensor ``name`` (numbers as (R,)
        tensors); empty for an optimizer named by import path. Probes read η, β1, β2 here."""
        if self.torch_optimizer is not None:
            return {}
        return self._at(self.hypers[name], max(self.t, 1))

    @torch.no_grad()
    def without_decay(self, grads: Sequence[Tensor]) -> dict[str, Tensor] | None:
        """The parameters the next step would give with weight decay switched off (λ = 0 and
        decay ``none`` in the rule and any child), from the current state, changing nothing;
        None for an optimizer named by import path. The ``update`` probe splits each step
        with it."""
        if self.torch_optimizer is not None:
            return None
        hypers = {k: without_weight_decay(h) for k, h in self.hypers_at(self.t + 1).items()}
        proposal, _ = tree_step(
            self.rule,
            self.params,
            dict(zip(self.params, grads, strict=True)),
            self.state,
            self.t + 1,
            hypers,
        )
        return proposal


def _stack_hyper(hypers: list[dict], params: dict[str, Tensor]) -> dict:
    """Floats become (R,) tensors; flags and sizes (str, bool, int) must agree across the group;
    a graft's children (dicts) are stacked the same way."""
    any_param = next(iter(params.values()), torch.empty(0))
    out = {}
    for key, first in hypers[0].items():
        values = [h[key] for h in hypers]
        if isinstance(first, dict):
            out[key] = _stack_hyper(values, params)
        elif isinstance(first, (bool, str, int)):
            if any(v != first for v in values):
                raise ValueError(f"optimizer {key!r} differs inside one group: {values}")
            out[key] = first
        else:
            out[key] = torch.tensor(values, dtype=any_param.dtype, device=any_param.device)
    return out
