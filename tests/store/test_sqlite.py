"""The store: plan/start/log/finish life cycle, final metrics, arrays, and optlab.load."""

import numpy as np
import pytest

import optlab
from optlab.config import expand, load_experiment
from optlab.store import Store


def test_life_cycle_and_load(tmp_path):
    path = tmp_path / "s.db"
    store = Store(path)
    (run,) = expand(load_experiment({"name": "e", "base": {"model": {"name": "exact"}}}))
    store.plan([run])
    assert store.statuses([run.run_id]) == {run.run_id: "pending"}
    store.start([run.run_id], "cpu")
    store.log([(run.run_id, "eval", "loss", 0, 0.7)], [(run.run_id, "pred", 0, np.arange(3))])
    assert store.statuses([run.run_id]) == {run.run_id: "running"}
    store.finish(
        [(run.run_id, None, 1.5)],
        [(run.run_id, "eval", "loss", 10, 0.2), (run.run_id, "test", "accuracy", 10, 0.9)],
    )
    assert store.final_metrics() == {run.run_id: {"eval_loss": 0.2, "test_accuracy": 0.9}}
    np.testing.assert_array_equal(store.array(run.run_id, "pred")[0], np.arange(3))
    assert store.start([run.run_id], "cpu") == []  # done: not trained again
    assert store.start([run.run_id], "cpu", redo=True) == [run.run_id]  # unless asked
    # and a retry drops what the earlier attempt wrote
    assert store.metrics([run.run_id]).empty and store.array(run.run_id, "pred") == {}
    store.close()
    res = optlab.load(path)
    assert res.runs.loc[0, "model.name"] == "exact" and res.runs.loc[0, "experiment"] == "e"
    assert list(res.metrics.columns) == ["run_id", "split", "name", "step", "value"]


def test_load_of_a_missing_store_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.db"):
        optlab.load(tmp_path / "nope.db")


def test_versions_name_the_commit_of_this_checkout():
    import subprocess
    from pathlib import Path

    from optlab.store.sqlite import commit, versions

    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert commit() is not None and commit().rstrip("+") == head  # an editable install
    assert versions()["commit"] == commit()


def test_an_analysis_reads_only_the_runs_its_sweep_planned(tmp_path):
    """Two profiles of one experiment link their runs to the same cases; a reproduce of one
    of them must not read the other's."""
    spec = load_experiment(
        {
            "name": "e",
            "base": {"model": {"name": "exact"}, "train": {"steps": 10}},
            "cases": {"a": {}},
            "profiles": {"quick": {"train.steps": 5}},
        }
    )
    store = Store(tmp_path / "s.db")
    paper, quick = expand(spec, seeds=[1, 2]), expand(spec, profile="quick", seeds=[1, 2])
    store.plan([*paper, *quick], [spec])
    assert len(store.runs("e")) == 4
    store.analyze_only(r.run_id for r in quick)
    assert set(store.runs("e")["id"]) == {r.run_id for r in quick}
    store.analyze_only(None)
    assert len(store.runs("e")) == 4
