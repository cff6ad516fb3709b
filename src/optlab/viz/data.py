"""An experiment's record, read from the store once, in the shapes figures want.

A *condition* is what a figure gives one colour: the case and every setting that varies
across the experiment's runs except the training seed. Runs of one condition that differ
only in ``train.seed`` are its seeds. Where the experiment tunes an axis (its spec's
``tune``, e.g. the learning rate), each cell keeps the value the analysis keeps
(``optlab.analysis.cells.tuned_runs``: lowest mean final eval loss), and figures draw only
those *shown* conditions. Where the cases change different
settings (the final model's ablations: nonlinearity, weight decay, betas, ...), figures come
in *groups*, one per setting, each with the cases that change nothing (the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from optlab.analysis.cells import axes, tuned_runs
from optlab.probes import PROBES
from optlab.store import Store

SEED = "train.seed"


@dataclass(frozen=True)
class SeedBand:
    """One condition's series over training: per step the mean over its seeds and the lowest
    and highest seed (what a figure draws as a line in a shaded band)."""

    condition: str
    steps: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    seeds: int


@dataclass(frozen=True)
class ExperimentRecord:
    name: str
    runs: pd.DataFrame  # one row per run, with a ``condition`` label column
    metrics: pd.DataFrame  # long form: run_id, split, name, step, value
    varying: list[str]  # config columns that vary across conditions
    shown: list[str]  # the conditions figures draw: all, or each cell's tuned best
    spec: dict  # the experiment's spec as stored (empty if the store has none)

    def curves(self, split: str, name: str) -> pd.DataFrame:
        """Steps × runs of one metric, runs labelled by condition: columns (condition, run_id)."""
        m = self.metrics[(self.metrics["split"] == split) & (self.metrics["name"] == name)]
        wide = m.pivot(index="step", columns="run_id", values="value")
        labels = self.runs.set_index("id")["condition"]
        wide.columns = pd.MultiIndex.from_arrays(
            [labels[wide.columns].to_numpy(), wide.columns], names=["condition", "run_id"]
        )
        return wide

    def has(self, split: str, name: str) -> bool:
        """Whether some run recorded ``name`` in ``split``."""
        m = self.metrics
        return bool(((m["split"] == split) & (m["name"] == name)).any())

    def bands(self, split: str, name: str) -> list[SeedBand]:
        """``name`` in ``split`` for each shown condition that recorded it, in the record's
        order; empty where no run recorded it."""
        if not self.has(split, name):
            return []
        wide = self.curves(split, name)
        present = set(wide.columns.get_level_values("condition"))
        out = []
        for condition in (c for c in self.conditions if c in present):
            seeds = wide[condition].dropna(how="all")
            out.append(
                SeedBand(
                    condition,
                    seeds.index.to_numpy(float),
                    seeds.mean(axis=1).to_numpy(float),
                    seeds.min(axis=1).to_numpy(float),
                    seeds.max(axis=1).to_numpy(float),
                    seeds.shape[1],
                )
            )
        return out

    @property
    def conditions(self) -> list[str]:
        """The shown conditions, in the order the experiment lists them."""
        return [c for c in dict.fromkeys(self.runs["condition"]) if c in self.shown]

    def groups(self) -> list[ExperimentRecord]:
        """The record once per setting its cases change, each with the baseline cases (those
        that change nothing), titled ``<experiment>: <setting>``; the record itself when some
        setting is changed by every case (the ladder's model.name) or there is one setting."""
        cases = self.spec.get("cases", {})
        factor = {case: ", ".join(sorted(o)) for case, o in cases.items()}
        factors = list(dict.fromkeys(f for f in factor.values() if f))
        changed = [set(o) for o in cases.values() if o]
        if len(factors) <= 1 or set.intersection(*changed):
            return [self]
        case_of = self.runs.drop_duplicates("condition").set_index("condition")["case"]
        out = []
        for f in factors:
            cases = {c for c, g in factor.items() if g in ("", f)}
            shown = [c for c in self.conditions if case_of[c] in cases]
            out.append(replace(self, name=f"{self.name}: {f}", shown=shown))
        return out


def distinct(values: pd.Series) -> int:
    """How many different values, counting NaN (a setting a model leaves unset) as one."""
    return values.map(str).nunique()


def config_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if "." in c]


def load_experiment_record(store: Store, experiment: str) -> ExperimentRecord:
    """The experiment's runs, each labelled with its condition: the case name, then the
    settings that vary inside a case (grid axes), e.g. ``plus_minus, lr=0.003``."""
    runs = store.runs(experiment).reset_index(drop=True)
    cols = [c for c in config_columns(runs) if c != SEED]
    varying = [c for c in cols if distinct(runs[c]) > 1]
    within = [c for c in varying if runs.groupby("case")[c].agg(distinct).max() > 1]
    single_case = runs["case"].nunique() == 1

    def label(row) -> str:
        parts = [] if single_case and within else [str(row["case"])]
        return ", ".join(parts + [f"{c.split('.')[-1]}={_plain(row[c])}" for c in within])

    runs["condition"] = runs.apply(label, axis=1)
    spec = store.experiments().get(experiment, {})
    shown = runs["condition"]
    if axes(spec)[1]:
        shown = shown[runs["id"].isin(set(tuned_runs(store, experiment)["id"]))]
    figures = ("eval", "test", "convergence", "batch", *(p.split for p in PROBES.values()))
    metrics = store.metrics(list(runs["id"]), split=figures)  # all but each step's train loss
    return ExperimentRecord(experiment, runs, metrics, varying, list(dict.fromkeys(shown)), spec)


def experiments(store: Store) -> list[str]:
    rows = store.db.execute(
        "SELECT experiment FROM experiment_runs GROUP BY experiment ORDER BY MIN(rowid)"
    ).fetchall()
    return [r[0] for r in rows]


def _plain(value):
    return value.item() if hasattr(value, "item") else value
