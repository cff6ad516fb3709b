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


def test_tuned_experiments_show_the_conditions_the_analysis_keeps(tmp_path):
    from optlab.config import expand, load_experiment
    from optlab.engine import run_planned

    spec = load_experiment(
        {
            "name": "t",
            "base": {"model": {"name": "plus_minus"}},
            "cases": {"a": {"optimizer.decay": "l2"}, "b": {"optimizer.decay": "l1"}},
            "tune": {"optimizer.lr": [1e-12, 1e-2]},
        }
    )
    store = Store(tmp_path / "t.db")
    planned = expand(spec, {"train.steps": 40, "train.eval_every": 20, "task.n_eval": 100})
    run_planned(planned, store, experiments=[spec])
    rec = load_experiment_record(store, "t")
    assert len(rec.runs) == 4 and len(rec.shown) == 2  # one tuned lr per case
    finals = store.final_metrics()  # the rule by hand: per case, the lower final eval loss
    best = {
        min(group.itertuples(), key=lambda r: finals[r.id]["eval_loss"]).condition
        for _, group in rec.runs.groupby("case")
    }
    assert set(rec.shown) == best
    store.close()


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
