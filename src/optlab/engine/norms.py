"""What the engine does to scale-invariant weights after every step (Grosse 2022, CSC 2541
lecture 5: a weight w that feeds a normalizer only matters through w/‖w‖, so its norm sets
the step's effective size and nothing else).

- ``train.project = "unit_norm"``: w ← w/‖w‖ per run and tensor, at init and after every
  step. The effective learning rate is then the explicit one, and weight decay, which only
  shrinks ‖w‖, has nothing left to act on (the lecture's suggestion).
- ``train.graft_norms``: norm grafting, the lecture's mechanism 1 of weight decay. After
  every step w ← w·‖w′‖/‖w‖, where w′ is the same tensor of a partner run: this run with
  the optimizer fields of ``graft_norms`` (typically its weight decay). The partner trains
  in the same stack as a shadow run, from the same seed and data, and is not stored; the
  grafted run keeps its own directions and every other parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.config import RunSpec
from optlab.stacking import flat_runs, per_run

SHADOW = ":norms"  # suffix of a shadow partner's id, never written to the store


def partner(spec: RunSpec) -> RunSpec:
    """The run whose norms ``spec`` grafts: ``spec`` with the optimizer fields of
    ``train.graft_norms``, grafting nothing itself."""
    optimizer = spec.optimizer.model_validate(
        {**spec.optimizer.model_dump(), **spec.train.graft_norms}
    )
    train = spec.train.model_copy(update={"graft_norms": {}})
    return spec.model_copy(update={"optimizer": optimizer, "train": train})


def shadows(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """The partners of the runs of ``specs`` that graft norms, in their order."""
    return [partner(s) for s in specs if s.train.graft_norms]


def needs_scale_invariant(spec: RunSpec) -> str | None:
    """The setting that acts on scale-invariant weights, if ``spec`` sets one."""
    if spec.train.project != "none":
        return f"train.project: {spec.train.project!r}"
    if spec.train.graft_norms:
        return "train.graft_norms"
    return None


def _norms(w: Tensor) -> Tensor:
    """‖w‖ of each run's slice, shaped to broadcast against w."""
    return per_run(flat_runs(w).norm(dim=1), w.dim())


class NormControl:
    """The projection and grafting of one stack: the real runs first, then their shadow
    partners, in the order ``shadows`` gives."""

    def __init__(
        self, specs: Sequence[RunSpec], names: Sequence[str], device: torch.device | str = "cpu"
    ) -> None:
        self.names = tuple(names)
        self.project = specs[0].train.project == "unit_norm"  # shared by a group
        grafted = [i for i, s in enumerate(specs) if s.train.graft_norms]
        self.grafted = torch.tensor(grafted, dtype=torch.long, device=device)
        self.partners = torch.arange(len(specs), len(specs) + len(grafted), device=device)

    @property
    def active(self) -> bool:
        return self.project or len(self.grafted) > 0

    @torch.no_grad()
    def __call__(self, params: dict[str, Tensor]) -> None:
        """Project, or graft the partners' norms onto the grafted runs, in place."""
        for name in self.names:
            w = params[name]
            if self.project:
                w.div_(_norms(w))
            if len(self.grafted):
                g, p = self.grafted, self.partners
                w[g] = w[g] * (_norms(w[p]) / _norms(w[g]))
