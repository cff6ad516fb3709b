"""Figures of scale-invariant weights (Grosse (2022), CSC 2541 lecture 5): their norms, the
angular update against the equilibrium decay sets, and norm grafting's accuracy.

A weight is scale-invariant where the engine records its ``invariance`` probes (it feeds a
normalizer). With weight decay λ its norm settles where decay's shrinking balances the
gradient's growing, and the angle between w_k and w_{k+1} settles at √(2ηλ/(1+α)) for SGD with
momentum α, √(2ηλ(1−β₁)/(1+β₁)) for AdamW (Wan et al. 2021; Kosson et al. 2024;
``optlab.analysis.invariance.equilibrium_angle``). A run with ``train.graft_norms`` takes,
after every step, the norms of a partner that differs by those optimizer fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optlab.analysis.convergence import tail
from optlab.analysis.invariance import FORMULAS, equilibrium_angle, weight_decay_of
from optlab.viz.data import SEED, ExperimentRecord, config_columns
from optlab.viz.figure import plt, save
from optlab.viz.weights import line_style, plot_per_tensor, tensor_names

GRAFT = "train.graft_norms."  # the partner's optimizer fields, one column each
FORMULA = {"sgd": "sgdm", "adamw": "adamw"}  # optimizer.name → equilibrium_angle's formula
CONSTANT_LR = ("constant", "warmup")  # schedules whose η is optimizer.lr once training settles


@dataclass(frozen=True)
class Equilibrium:
    """The predicted angular update per step of one tensor under one condition."""

    condition: str
    tensor: str
    formula: str  # a key of FORMULAS
    angle: float  # radians


@dataclass(frozen=True)
class Grafting:
    """A grafted condition, the same run without grafting and the partner whose norms it takes
    (None where the record does not show it), and the partner's optimizer fields."""

    graft: str
    plain: str | None
    partner: str | None
    fields: dict


def invariant_tensors(record: ExperimentRecord) -> list[str]:
    """The tensors with ``invariance`` probes: the scale-invariant ones."""
    return tensor_names(record, "invariance")


def plot_norms(record: ExperimentRecord, path: str | Path) -> Path | None:
    """‖w‖ of each scale-invariant tensor over training, a panel per tensor, on a log scale (the
    effective lr goes as a power of it); None without any."""
    tensors = invariant_tensors(record)
    if not tensors:
        return None
    return plot_per_tensor(record, "params", "l2", path, "‖w‖", tensors=tensors, log=True)


def _settings(record: ExperimentRecord) -> pd.DataFrame:
    """Each shown condition's config (its first run's), indexed by condition."""
    first = record.runs.drop_duplicates("condition").set_index("condition")
    return first.loc[record.conditions]


def _unset(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _graft_fields(run: pd.Series) -> dict:
    """The partner's optimizer fields of a run that grafts norms; empty for one that does not."""
    return {
        c.removeprefix(GRAFT): run[c]
        for c in run.index
        if c.startswith(GRAFT) and not _unset(run[c])
    }


def equilibria(record: ExperimentRecord) -> list[Equilibrium]:
    """The predicted equilibrium of each condition and scale-invariant tensor with an angular
    update where it applies: SGD or AdamW at a constant η, λ > 0 on the tensor, and the norm
    left to the optimizer (no unit-norm projection, no grafting)."""
    recorded = {
        t: set(record.curves("invariance", f"{t}/angular_update").columns.get_level_values(0))
        for t in invariant_tensors(record)
    }
    out = []
    for condition, run in _settings(record).iterrows():
        formula = FORMULA.get(run["optimizer.name"])
        project = run.get("train.project", "none")
        projected = not _unset(project) and project != "none"
        grafted = bool(_graft_fields(run))
        schedule = run.get("optimizer.lr_schedule.kind", "constant")
        if formula is None or projected or grafted or schedule not in CONSTANT_LR:
            continue
        beta = run["optimizer.momentum"] if formula == "sgdm" else run["optimizer.betas"][0]
        for t, conditions in recorded.items():
            lam = weight_decay_of(run, t)
            if condition in conditions and lam > 0:
                angle = equilibrium_angle(formula, run["optimizer.lr"], lam, beta)
                out.append(Equilibrium(condition, t, formula, angle))
    return out


def plot_angular_equilibrium(record: ExperimentRecord, path: str | Path) -> Path | None:
    """The angular update per step (mean over seeds, log scale) of the conditions with a
    predicted equilibrium, that equilibrium dashed in the same colour and, as a thick segment,
    the mean over each condition's last fifth of training (what the claim compares with
    it); a panel per tensor. None without any."""
    lines = equilibria(record)
    if not lines:
        return None
    tensors = list(dict.fromkeys(e.tensor for e in lines))
    fig, axes = plt.subplots(1, len(tensors), figsize=(8 * len(tensors), 6), squeeze=False)
    for ax, tensor in zip(axes.flat, tensors, strict=True):
        wide = record.curves("invariance", f"{tensor}/angular_update")
        for e in (e for e in lines if e.tensor == tensor):
            color = line_style(record.conditions.index(e.condition))["color"]
            mean = wide[e.condition].mean(axis=1).dropna()
            shown = mean[mean > 0]  # a log axis has no zero angle
            ax.plot(shown.index, shown, color=color, label=e.condition, linewidth=1.2)
            steps, window = tail(mean.index.to_numpy(float), mean.to_numpy(float))
            ax.hlines(window.mean(), steps[0], steps[-1], color=color, lw=5, alpha=0.4)
            label = f"{e.condition}: {FORMULAS[e.formula]} = {e.angle:.3g} rad"
            ax.axhline(e.angle, color=color, ls="--", lw=1, label=label)
        ax.set_yscale("log")
        ax.set_title(tensor)
        ax.set_xlabel("Training step")
        ax.set_ylabel("Angular update ∠(w_k, w_{k+1}) (rad)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{record.name}: angular update and its predicted equilibrium")
    fig.tight_layout()
    return save(fig, path)


def graftings(record: ExperimentRecord) -> list[Grafting]:
    """Each shown condition that grafts norms, with its two partners found by config: the
    same settings without grafting, and those with the grafted optimizer fields set."""
    runs = _settings(record)
    columns = [c for c in config_columns(runs) if c != SEED]
    grafted = [c for c in columns if c.startswith(GRAFT)]
    frame = runs[columns].map(str)  # NaN as "nan": unset equals unset

    def find(target: pd.Series) -> str | None:
        match = frame.index[(frame == target[columns].map(str)).all(axis=1)]
        return match[0] if len(match) else None

    out = []
    for condition, run in runs.iterrows():
        fields = _graft_fields(run)
        if not fields:
            continue
        plain = run.copy()
        plain[grafted] = math.nan
        partner = plain.copy()
        for field, value in fields.items():
            partner[f"optimizer.{field}"] = value
        out.append(Grafting(condition, find(plain), find(partner), fields))
    return out


def plot_grafting(record: ExperimentRecord, path: str | Path) -> Path | None:
    """Eval accuracy of each grafted condition beside its two partners, mean over seeds
    shaded from the lowest to the highest seed, a panel per grafted condition; None without
    grafting or eval accuracy."""
    sets = graftings(record)
    if not sets or not record.has("eval", "accuracy"):
        return None
    wide = record.curves("eval", "accuracy")
    present = set(wide.columns.get_level_values("condition"))
    fig, axes = plt.subplots(1, len(sets), figsize=(8 * len(sets), 6), squeeze=False)
    for ax, g in zip(axes.flat, sets, strict=True):
        changed = ", ".join(f"{k} = {v}" for k, v in g.fields.items())
        roles = {
            g.plain: "without grafting",
            g.partner: changed,
            g.graft: f"with {g.partner or changed}'s norms",
        }
        for condition, role in roles.items():
            if condition is None or condition not in present:
                continue
            color = line_style(record.conditions.index(condition))["color"]
            seeds = wide[condition]
            mean = seeds.mean(axis=1)
            label = f"{condition} ({role}; {seeds.shape[1]} seeds)"
            ax.plot(mean.index, mean, color=color, label=label, linewidth=1.2)
            low, high = seeds.min(axis=1), seeds.max(axis=1)
            ax.fill_between(mean.index, low, high, color=color, alpha=0.2, lw=0)
        ax.set_title(f"{g.graft}: norms grafted from {changed}")
        ax.set_xlabel("Training step")
        ax.set_ylabel("Eval accuracy")
        ax.legend(fontsize=8)
    fig.suptitle(f"{record.name}: norm grafting")
    fig.tight_layout()
    return save(fig, path)
