"""An experiment's record, read from the store once, in the shapes figures want.

A *condition* is what a figure gives one colour: the case and every setting that varies
across the experiment's runs except the training seed. Runs of one condition that differ
only in ``train.seed`` are its seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from optlab.store import Store

SEED = "train.seed"


@dataclass(frozen=True)
class ExperimentRecord:
    name: str
    runs: pd.DataFrame  # one row per run, with a ``condition`` label column
    metrics: pd.DataFrame  # long form: run_id, split, name, step, value
    varying: list[str]  # config columns that vary across conditions

    def curves(self, split: str, name: str) -> pd.DataFrame:
        """Steps × runs of one metric, runs labelled by condition: columns (condition, run_id)."""
        m = self.metrics[(self.metrics["split"] == split) & (self.metrics["name"] == name)]
        wide = m.pivot(index="step", columns="run_id", values="value")
        labels = self.runs.set_index("id")["condition"]
        wide.columns = pd.MultiIndex.from_arrays(
            [labels[wide.columns].to_numpy(), wide.columns], names=["condition", "run_id"]
        )
        return wide

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.runs["condition"]))


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
    metrics = store.metrics(list(runs["id"]))
    return ExperimentRecord(experiment, runs, metrics, varying)


def experiments(store: Store) -> list[str]:
    rows = store.db.execute(
        "SELECT experiment FROM experiment_runs GROUP BY experiment ORDER BY MIN(rowid)"
    ).fetchall()
    return [r[0] for r in rows]


def _plain(value):
    return value.item() if hasattr(value, "item") else value
