"""Figures of the grad_stats probe over training (``optlab.probes.gradient_stats``): the 2025
thesis notepad's KL between the Gaussian of Adam's moments and the minibatch gradient's, how
v̂ − m̂² tracks the gradient's variance (Balles and Hennig 2018), the gradient noise scale
(McCandlish et al. 2018), the signal-to-noise ratio, the step's cosine with −ḡ and √v̂.

Each panel is one whole-model quantity (the bare names), per condition the mean over seeds
shaded from the lowest to the highest seed; log scale where every value drawn is positive and
they span more than a decade.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optlab.viz.data import ExperimentRecord
from optlab.viz.figure import plt, save
from optlab.viz.weights import line_style

SPLIT = "grad_stats"
# (quantity, axis label), in the order the panels read
PANELS = (
    ("kl_adam", "KL(N(ḡ, Σ/B) ‖ N(m̂, v̂ − m̂²))"),
    ("kl_adam_reverse", "KL(N(m̂, v̂ − m̂²) ‖ N(ḡ, Σ/B))"),
    ("v_hat_tracks", "geometric mean of (v̂ − m̂²)/(Σ/B)"),
    ("kl_invalid_share", "share of coordinates left out"),
    ("noise_scale", "B_simple = tr Σ / ‖ḡ‖²"),
    ("noise_scale_2b", "B_simple, two-batch estimator"),
    ("snr", "‖ḡ‖² / (tr Σ / B)"),
    ("cos_update_grad", "cos(Δθ, −ḡ)"),
    ("sqrt_v_norm", "‖√v̂‖"),
)
COLUMNS = 3


def plot_gradient_noise(record: ExperimentRecord, path: str | Path) -> Path | None:
    """A panel per grad_stats quantity that some shown condition recorded; None without any."""
    panels = [(q, label) for q, label in PANELS if record.bands(SPLIT, q)]
    if not panels:
        return None
    rows = -(-len(panels) // COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(6 * COLUMNS, 4.2 * rows), squeeze=False)
    for ax, (quantity, label) in zip(axes.flat, panels, strict=False):
        drawn = []
        for s in record.bands(SPLIT, quantity):
            style = line_style(record.conditions.index(s.condition))
            ax.plot(s.steps, s.mean, label=s.condition, linewidth=1.2, **style)
            if s.seeds > 1:
                ax.fill_between(s.steps, s.lo, s.hi, color=style["color"], alpha=0.12, lw=0)
            drawn.append(s.lo[np.isfinite(s.lo)])
            drawn.append(s.hi[np.isfinite(s.hi)])
        values = np.concatenate(drawn)
        if len(values) and values.min() > 0 and np.log10(values.max() / values.min()) > 1:
            ax.set_yscale("log")  # only where every value drawn is positive
        if quantity == "v_hat_tracks":
            ax.axhline(1, color="k", lw=1, ls=":")
        ax.set_title(quantity)
        ax.set_xlabel("Training step")
        ax.set_ylabel(label)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    columns = min(len(labels), 3)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=9)
    inches = 0.3 + 0.28 * -(-len(labels) // columns)
    fig.suptitle(f"{record.name}: gradient noise and Adam's moments (mean over seeds, min–max)")
    fig.tight_layout(rect=(0, inches / fig.get_figheight(), 1, 0.98))
    return save(fig, path)
