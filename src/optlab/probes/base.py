"""What a probe sees at a recorded step, and what it is.

A probe is a small function of an ``Observation`` that returns per-run values:
``{name: (R,) tensor}`` for metrics, or ``{name: (R, ...) tensor}`` for arrays. The
recorder moves everything a step produced to the host in one transfer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

Params = dict[str, Tensor]


class Stepper(Protocol):
    """What probes read of the engine's optimizer (``optlab.engine.optimizer``)."""

    t: int  # steps taken
    state: dict[str, dict[str, Tensor]]  # per tensor, the rule's state (exp_avg, …)
    torch_optimizer: object | None  # set for an optimizer named by import path
    step_degree: int | None  # k in Δθ(c·g) = c^k·Δθ(g) (``optlab.optim.Rule``)

    def hyper_for(self, name: str) -> dict: ...

    def lr_scale(self, t: int) -> float: ...

    def without_decay(self, grads: Sequence[Tensor]) -> Params | None: ...


@dataclass(frozen=True)
class Update:
    """The last optimizer step of each tensor, split into its parts (all (R, ...) stacks).

    ``delta`` = θ_t − θ_{t−1}; ``grads`` = ∇L(θ_{t−1}), the gradients the step read;
    ``adaptive`` is the step the rule takes with weight decay switched off, from the same
    state and gradient; ``decay`` = delta − adaptive. For an optimizer named by import path
    the split is unknown and both parts are None.
    """

    before: Params
    delta: Params
    grads: Params
    adaptive: Params | None
    decay: Params | None


@dataclass(frozen=True)
class Evaluation:
    """One pass over the eval set: (R,) loss and accuracy (None for a regression), output
    statistics, predictions."""

    loss: Tensor
    accuracy: Tensor | None
    outputs: dict[str, Tensor]  # name -> (R,)
    predictions: Tensor | None  # (R, N) predicted class of every eval point, when asked


@dataclass(frozen=True)
class Jacobians:
    """A Gauss-Newton pass over a fixed batch of N inputs x (``optlab.engine.curvature``): each
    Linear layer's inputs a (R, N, in) and output gradients g (R, C·N, out) of the gauss_newton
    curvature (its factors: ``optlab.optim.kfac.layer_factors``), by the layer's prefix ("0.",
    "2."), and per run (R,), with J(x) = ∂f(x)/∂x the Jacobian of the C outputs:
    E_x ‖J(x)‖²_F, and E_x tr(J(x) Σ J(x)ᵀ) with Σ = E[x xᵀ] over the batch, the same norm in
    whitened coordinates z = Σ^(−1/2) x, where ∂f/∂z = J Σ^(1/2)."""

    layers: dict[str, tuple[Tensor, Tensor]]
    jacobian_sq: Tensor
    jacobian_sq_whitened: Tensor


@dataclass(frozen=True)
class Observation:
    step: int
    params: Params  # (R, ...) stacks
    evaluation: Evaluation | None  # None at a step recorded for the grad cadence alone
    init: Params | None = None  # θ_0, kept when a probe needs it
    update: Update | None = None  # None at step 0
    optimizer: Stepper | None = None
    scale_invariant: tuple[str, ...] = ()  # tensors the model declares scale-invariant
    task: dict[str, Tensor] = field(default_factory=dict)  # eval points, labels, centers
    model_scalars: dict[str, Tensor] = field(default_factory=dict)  # the model's own, (R,) each
    # the engine's Gauss-Newton pass at the current weights, run when a probe calls it
    gauss_newton: Callable[[], Jacobians | None] | None = None
    # the per-example gradients of fixed training examples at the weights the last step read
    # (θ_{t−1}; θ_0 at step 0), on call
    per_sample: Callable[[], Params] | None = None
    batch: Tensor | None = None  # (R,) each run's training batch B in that step


@dataclass(frozen=True)
class Probe:
    """``split``: the metrics split (or the arrays' name prefix); ``needs``: what the engine
    must keep for it ("init", "update", "predictions"); ``arrays``: writes arrays, on the
    coarser ``probes.array_every`` cadence; ``grad_cadence``: recorded on
    ``probes.grad_every``'s steps instead of the eval cadence."""

    split: str
    measure: Callable[[Observation], dict[str, Tensor]]
    needs: frozenset[str] = frozenset()
    arrays: bool = False
    grad_cadence: bool = False
