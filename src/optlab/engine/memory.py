"""How many runs of a group fit a memory budget (``--max-memory``).

One run in a stack costs its parameters several times over (θ, its gradient, Adam's two
moments, the update's temporaries) plus the activations autograd keeps through a step,
about a dozen (B, width) tensors for the ladder's rungs and the final model. What a
stack shares (the task's data, the eval chunk of ``train.EVAL_CHUNK_ELEMENTS``) is not
counted per run.
"""

from __future__ import annotations

import torch

from optlab.config import RunSpec
from optlab.engine.train import task_for
from optlab.models import build_model

STATE_COPIES = 6  # θ, ∇θ, m, v, and two temporaries of the update
ACTIVATION_COPIES = 12  # (B, width) tensors kept per run between forward and backward
FLOAT_BYTES = 4  # float32


def run_bytes(spec: RunSpec) -> int:
    """Estimated bytes one run adds to a stack: 4·(6·parameters + 12·B·width), B the
    largest batch of its schedule and width the model's widest activation per point."""
    model = build_model(spec.model, task_for(spec))
    n_params = sum(p.numel() for p in model.init(torch.Generator().manual_seed(0)).values())
    batch = max(spec.train.batch_sizes)
    return FLOAT_BYTES * (STATE_COPIES * n_params + ACTIVATION_COPIES * batch * model.width)


def runs_that_fit(spec: RunSpec, max_memory: int) -> int:
    """The most runs like ``spec`` whose stack fits ``max_memory`` bytes (at least one)."""
    return max(1, max_memory // run_bytes(spec))


def parse_bytes(text: str) -> int:
    """'512M', '2G', '1.5GB' or a plain number of bytes -> bytes (powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1] if value and value[-1] in units else ""
    number = float(value[: len(value) - len(unit)])
    if not number > 0:
        raise ValueError(text)
    return int(number * units[unit])
