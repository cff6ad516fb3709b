"""K-FAC's cost per step against AdamW's on the digits MLP, side by side in one process.

The same run (the digits catalog's first case: 2 hidden layers of 128, batch 128) trains
with AdamW and with K-FAC, alternated, best of ``repeats`` each, over enough steps that the
inverse refresh (every ``inverse_every`` = 10 steps) is amortized; what every run pays once
drops out (``modules.steps_rate``). The ratio is seconds per step, K-FAC's over AdamW's.
"""

from __future__ import annotations

from optlab.bench import modules
from optlab.store import Store

KFAC = {"name": "kfac", "lr": 0.01, "momentum": 0.9, "damping": 1e-2, "weight_decay": 0.0}


def kfac_case(store: Store, steps: int, repeats: int, optlab_rate) -> dict:
    """Steps per second of one run under AdamW, K-FAC (Fisher) and K-FAC (Gauss-Newton,
    one backward pass per class), and each K-FAC's cost per step relative to AdamW's."""
    adamw = modules.catalog_spec("digits", steps)
    fields = adamw.optimizer.model_dump(include={"lr_schedule", "eps_schedule"})
    specs = {
        "adamw": adamw,
        **{
            curvature: adamw.model_copy(
                update={
                    "optimizer": adamw.optimizer.model_validate(
                        {**fields, **KFAC, "curvature": curvature}
                    )
                }
            )
            for curvature in ("fisher", "gauss_newton")
        },
    }
    rates = {name: 0.0 for name in specs}
    for _ in range(repeats):
        for name, spec in specs.items():
            rates[name] = max(rates[name], modules.steps_rate(spec, 1, store, optlab_rate))
    return {
        **{f"{name}_steps_per_s": rate for name, rate in rates.items()},
        "step_cost_vs_adamw": rates["adamw"] / rates["fisher"],
        "gauss_newton_step_cost_vs_adamw": rates["adamw"] / rates["gauss_newton"],
    }
