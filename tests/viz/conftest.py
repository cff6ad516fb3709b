"""One tiny two-case, two-seed experiment with every array probe, trained once per session."""

import pytest

from optlab.config import expand, load_experiment
from optlab.engine import run_planned
from optlab.store import Store

EXPERIMENT = {
    "name": "mini <ladder> & co",
    "base": {
        "optimizer": {"lr": 1e-2},
        "probes": {"record": ["params", "outputs", "scalars", "snapshots", "predictions"]},
    },
    "cases": {
        "plus_minus": {"model.name": "plus_minus"},
        "centers": {"model.name": "centers", "model.hidden_dim": 16},
    },
    "seeds": [1, 2],
}
SMALL = {"train.steps": 60, "train.eval_every": 20, "task.n_eval": 200, "task.n_test": 100}


@pytest.fixture(scope="session")
def mini_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("viz") / "mini.db"
    store = Store(path)
    planned = expand(load_experiment(EXPERIMENT), SMALL)
    run_planned(planned, store)
    store.close()
    return path
