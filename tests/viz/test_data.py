"""Reading an experiment for figures: conditions labelled by case and grid axes, curves by seed."""

from optlab.store import Store
from optlab.viz.data import experiments, load_experiment_record


def test_conditions_and_curves(mini_store):
    store = Store(mini_store)
    (name,) = experiments(store)
    rec = load_experiment_record(store, name)
    assert rec.conditions == ["plus_minus", "centers"]
    assert "model.hidden_dim" in rec.varying and "train.seed" not in rec.varying
    acc = rec.curves("eval", "accuracy")
    assert list(acc.index) == [0, 20, 40, 60]
    assert acc["centers"].shape == (4, 2)  # two seeds
    store.close()


def test_grid_axes_label_conditions(tmp_path):
    from optlab.config import expand, load_experiment
    from optlab.engine import run_planned

    spec = load_experiment(
        {
            "name": "g",
            "base": {"model": {"name": "exact"}},
            "grid": {"optimizer.lr": [1e-3, 1e-2]},
        }
    )
    store = Store(tmp_path / "g.db")
    run_planned(expand(spec, {"train.steps": 2, "task.n_eval": 10, "task.n_test": 10}), store)
    rec = load_experiment_record(store, "g")
    assert rec.conditions == ["lr=0.001", "lr=0.01"]


def test_tuned_best_keeps_the_lowest_mean_eval_loss_per_cell():
    import pandas as pd

    from optlab.viz.data import tuned_best

    # case a: lr 0.1 has mean eval loss (0.5 + 0.3)/2 = 0.4 < lr 0.01's 0.45 → keep lr=0.1;
    # case b: lr 0.01 (0.2) beats lr 0.1 (0.9); case c never finished → its first condition.
    runs = pd.DataFrame(
        {
            "id": list("pqrstuvw"),
            "case": ["a", "a", "a", "a", "b", "b", "c", "c"],
            "optimizer.lr": [0.1, 0.1, 0.01, 0.01, 0.1, 0.01, 0.1, 0.01],
        }
    )
    runs["condition"] = runs["case"] + ", lr=" + runs["optimizer.lr"].astype(str)
    losses = dict(zip("pqrstu", [0.5, 0.3, 0.45, 0.45, 0.9, 0.2], strict=True))
    finals = {i: {"eval_loss": v} for i, v in losses.items()}
    best = tuned_best(runs, finals, ["optimizer.lr"], ["optimizer.lr"])
    assert best == ["a, lr=0.1", "b, lr=0.01", "c, lr=0.1"]


def test_groups_split_ablations_by_setting_and_keep_the_baseline(mini_store):
    from dataclasses import replace

    store = Store(mini_store)
    rec = load_experiment_record(store, experiments(store)[0])
    store.close()
    assert rec.groups() == [rec]  # both cases set model.name: one group
    # an ablation-style spec: a baseline and cases that each change one setting
    runs = rec.runs.assign(case=rec.runs["case"].map({"plus_minus": "base", "centers": "wide"}))
    ablation = replace(
        rec,
        runs=runs,
        spec={"cases": {"base": {}, "wide": {"model.hidden_dim": 16}, "lr": {"optimizer.lr": 1}}},
    )
    groups = ablation.groups()
    assert [g.name for g in groups] == [
        f"{rec.name}: model.hidden_dim",
        f"{rec.name}: optimizer.lr",
    ]
    assert groups[0].conditions == ["plus_minus", "centers"] and groups[1].conditions == [
        "plus_minus"
    ]
