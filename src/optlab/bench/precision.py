"""``optlab bench`` rows ``final_bf16`` and ``charlm_bf16``: a run's training steps per
second in bf16 (``train.precision``) against the same run in fp32, side by side.

The two alternate ``repeats`` times and each keeps its best, so that a neighbour's burst on
a shared machine does not decide their ratio. bf16 is forced: on a CPU without native
bfloat16 the figure is what the emulation costs, reported as measured. The runs evaluate
at their ends only, on a few points, and a run of one step is timed apart and taken off
(``modules.steps_rate``): an emulated bf16 eval of the bench's 10k points would take longer
than the steps measured."""

from __future__ import annotations

from collections.abc import Callable

import torch

from optlab.bench.modules import steps_rate
from optlab.config import RunSpec
from optlab.engine.precision import bf16_support, native_bf16
from optlab.store import Store

Rate = Callable[[RunSpec, int, Store], tuple[float, float]]  # measure.optlab_rate


def bf16_case(spec: RunSpec, store: Store, optlab_rate: Rate, repeats: int) -> dict:
    """One run of ``spec`` in fp32 and in (forced) bf16: steps/s each and their ratio."""
    bf16 = spec.with_train(precision="bf16", force_precision=True)
    pairs = [
        (steps_rate(spec, 1, store, optlab_rate), steps_rate(bf16, 1, store, optlab_rate))
        for _ in range(repeats)
    ]
    fp32_rate, bf16_rate = max(p[0] for p in pairs), max(p[1] for p in pairs)
    return {
        "fp32_steps_per_s": fp32_rate,
        "bf16_steps_per_s": bf16_rate,
        "speedup_vs_fp32": bf16_rate / fp32_rate,
    }


def cpu_bf16() -> dict:
    """The CPU's name and its bfloat16 support, as the bench says them."""
    cpu = torch.device("cpu")
    return {"native_bf16": native_bf16(cpu), "bf16_support": bf16_support(cpu)}
