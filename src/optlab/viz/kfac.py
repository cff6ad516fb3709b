"""Figures of K-FAC's curvature and of weight decay's mechanisms 2 and 3 (Grosse (2022), CSC 2541
lecture 5; Zhang, Wang, Xu and Grosse (2019)), drawn from the kfac and jacobian probes
(``optlab.probes.kfac``).

Mechanism 3: per K-FAC layer the damping ratio γ/(λ_max(A)·λ_max(G)); above 1 the damping
outweighs every direction of the layer's curvature block and K-FAC steps as SGD at η/γ does.
Under the Fisher, G shrinks as the model fits the data and the ratio rises past 1; decay holds it
lower; under Gauss-Newton it stays below. The factors' traces show which factor moved.
Mechanism 2: θᵀĜθ / ((L + 1)·E tr(J Σ Jᵀ)), exactly 1 for a linear network without biases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from optlab.viz.data import ExperimentRecord, SeedBand
from optlab.viz.figure import plt, save
from optlab.viz.weights import line_style, tensor_names

KFAC, JACOBIAN = "kfac", "jacobian"
RATIO = "damping_ratio"
TRACES = {"A_trace": "tr A (layer inputs)", "G_trace": "tr G (output gradients)"}


def kfac_layers(record: ExperimentRecord) -> list[str]:
    """The weight tensors of the K-FAC layers whose damping ratio some shown condition recorded."""
    return [t for t in tensor_names(record, KFAC) if record.bands(KFAC, f"{t}/{RATIO}")]


def plot_damping_ratio(record: ExperimentRecord, path: str | Path) -> Path | None:
    """Each K-FAC layer's damping ratio γ/(λ_max(A)·λ_max(G)) per condition, mean over seeds
    shaded from the lowest to the highest seed, log scale, a line at 1; a panel per layer.
    None without any."""
    layers = kfac_layers(record)
    if not layers:
        return None
    fig, axes = plt.subplots(1, len(layers), figsize=(6 * len(layers), 5), squeeze=False)
    for ax, layer in zip(axes.flat, layers, strict=True):
        for s in record.bands(KFAC, f"{layer}/{RATIO}"):
            _draw(ax, record, s)
        ax.axhline(1, color="k", lw=1, ls=":", label="γ = λ_max(A)·λ_max(G)")
        _log_axis(ax)
        ax.set_title(layer)
        ax.set_xlabel("Training step")
        ax.set_ylabel("Damping ratio γ / (λ_max(A)·λ_max(G))")
    fig.suptitle(f"{record.name}: damping against curvature, per K-FAC layer")
    return _save_with_legend(fig, axes.flat[0], path)


def plot_factor_traces(record: ExperimentRecord, path: str | Path) -> Path | None:
    """The traces of each K-FAC layer's running factors A and G per condition, mean over seeds
    shaded from the lowest to the highest seed, log scale where they span more than a decade
    (not the first layer's A: the same pixels under every condition); a row per factor, a
    column per layer. None without any."""
    layers = kfac_layers(record)
    if not layers:
        return None
    shape = (len(TRACES), len(layers))
    fig, axes = plt.subplots(*shape, figsize=(6 * shape[1], 4.5 * shape[0]), squeeze=False)
    for row, (quantity, label) in zip(axes, TRACES.items(), strict=True):
        for ax, layer in zip(row, layers, strict=True):
            for s in record.bands(KFAC, f"{layer}/{quantity}"):
                _draw(ax, record, s)
            if _decades(ax) > 1:
                _log_axis(ax)
            ax.set_title(f"{layer}: {label}")
            ax.set_xlabel("Training step")
            ax.set_ylabel(label)
    fig.suptitle(f"{record.name}: traces of the K-FAC factors")
    return _save_with_legend(fig, axes.flat[0], path)


def plot_jacobian_fit(record: ExperimentRecord, path: str | Path) -> Path | None:
    """θᵀĜθ / ((L + 1)·E tr(J Σ Jᵀ)) (``ratio_whitened``) per condition, mean over seeds shaded
    from the lowest to the highest seed, and against E‖J‖²_F (``ratio``), dashed; log scale,
    a line at 1. None without ``ratio_whitened``."""
    whitened = record.bands(JACOBIAN, "ratio_whitened")
    if not whitened:
        return None
    fig, ax = plt.subplots(figsize=(9, 6))
    for s in whitened:
        _draw(ax, record, s)
    for s in record.bands(JACOBIAN, "ratio"):
        style = line_style(record.conditions.index(s.condition)) | {"linestyle": "--"}
        ax.plot(s.steps, s.mean, linewidth=1, alpha=0.8, **style)
    ax.plot([], [], color="gray", ls="--", label="dashed: against E‖J‖²_F (raw pixels)")
    ax.axhline(1, color="k", lw=1, ls=":", label="θᵀĜθ = (L + 1)‖J‖²")
    _log_axis(ax)
    ax.set_xlabel("Training step")
    ax.set_ylabel("θᵀĜθ / ((L + 1)·E tr(J Σ Jᵀ))")
    ax.legend(fontsize=9)
    fig.suptitle(f"{record.name}: Gauss-Newton norm against the Jacobian norm")
    fig.tight_layout()
    return save(fig, path)


def _draw(ax: Axes, record: ExperimentRecord, s: SeedBand) -> None:
    """The mean as a line in the condition's colour, the seeds' range shaded."""
    style = line_style(record.conditions.index(s.condition))
    label = s.condition if s.seeds == 1 else f"{s.condition} ({s.seeds} seeds)"
    ax.plot(s.steps, s.mean, label=label, linewidth=1.3, **style)
    if s.seeds > 1:
        ax.fill_between(s.steps, s.lo, s.hi, color=style["color"], alpha=0.15, lw=0)


def _decades(ax: Axes) -> float:
    """How many decades the positive data drawn on ``ax`` span."""
    values = np.concatenate([line.get_ydata() for line in ax.get_lines()]).astype(float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.log10(values.max() / values.min())) if len(values) else 0.0


def _save_with_legend(fig: plt.Figure, ax: Axes, path: str | Path) -> Path:
    """``ax``'s legend below the panels, shared by all of them, and the figure written."""
    handles, labels = ax.get_legend_handles_labels()
    columns = min(len(labels), 5)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=10)
    inches = 0.2 + 0.3 * -(-len(labels) // columns)  # a margin and a line per row of entries
    fig.tight_layout(rect=(0, inches / fig.get_figheight(), 1, 1))
    return save(fig, path)


def _log_axis(ax: Axes) -> None:
    """A log y axis labelled in plain numbers: every decade where the data span more than two,
    else at 1, 2 and 5 (and 3 within one decade) of each."""
    span = _decades(ax)
    subs = (1.0,) if span > 2 else (1.0, 2.0, 5.0) if span > 1 else (1.0, 2.0, 3.0, 5.0)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
