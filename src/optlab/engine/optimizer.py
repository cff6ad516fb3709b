"""The engine's optimizer: one rule applied to a group of R stacked runs.

Built-in rules get each run's numeric hyperparameters as (R,) tensors; an optimizer
named by import path runs as ``torch.optim`` would, on groups of one run (the engine
groups such runs alone, since an arbitrary optimizer may mix the runs of a stack).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.optim import OPTIMIZERS, resolve_import_path


class StackedOptimizer:
    def __init__(self, specs: Sequence, params: dict[str, Tensor]) -> None:
        self.params = params
        self.t = 0
        name = specs[0].name
        if name in OPTIMIZERS:
            self.rule = OPTIMIZERS[name]
            self.hyper = _stack_hyper([self.rule.hyper(s) for s in specs], params)
            self.state = {k: self.rule.init(p) for k, p in params.items()}
            self.torch_optimizer = None
        else:
            (spec,) = specs  # one run per group
            cls = resolve_import_path(name)
            self.torch_optimizer = cls(list(params.values()), lr=spec.lr, **spec.kwargs)

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """Apply one update in place to the stacked parameters, given their gradients."""
        self.t += 1
        if self.torch_optimizer is not None:
            for p, g in zip(self.params.values(), grads, strict=True):
                p.grad = g
            self.torch_optimizer.step()
            return
        for (name, p), g in zip(self.params.items(), grads, strict=True):
            new_p, self.state[name] = self.rule.update(p, g, self.state[name], self.t, **self.hyper)
            p.copy_(new_p)

    def hyper_for(self, name: str) -> dict:
        """The hyperparameters the rule applies to tensor ``name`` (numbers as (R,) tensors);
        empty for an optimizer named by import path. Probes read η, β1, β2 here."""
        return self.hyper if self.torch_optimizer is None else {}

    @torch.no_grad()
    def without_decay(self, grads: Sequence[Tensor]) -> dict[str, Tensor] | None:
        """The parameters the next step would give with weight decay switched off (λ = 0 and,
        for AdamW, decay ``none``), from the current state, changing nothing; None for an
        optimizer named by import path. The ``update`` probe splits each step with it."""
        if self.torch_optimizer is not None:
            return None
        hyper = {**self.hyper, "weight_decay": torch.zeros_like(self.hyper["weight_decay"])}
        if "decay" in hyper:
            hyper["decay"] = "none"
        return {
            name: self.rule.update(p, g, self.state[name], self.t + 1, **hyper)[0]
            for (name, p), g in zip(self.params.items(), grads, strict=True)
        }


def _stack_hyper(hypers: list[dict], params: dict[str, Tensor]) -> dict:
    """Numbers become (R,) tensors; flags (str, bool) must agree across the group."""
    any_param = next(iter(params.values()), torch.empty(0))
    out = {}
    for key, first in hypers[0].items():
        values = [h[key] for h in hypers]
        if isinstance(first, (bool, str)):
            if any(v != first for v in values):
                raise ValueError(f"optimizer {key!r} differs inside one group: {values}")
            out[key] = first
        else:
            out[key] = torch.tensor(values, dtype=any_param.dtype, device=any_param.device)
    return out
