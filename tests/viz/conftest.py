"""One tiny two-case, two-seed experiment with every array probe, trained once per session;
the catalog's other workloads, tiny, trained on first use."""

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


# the catalog's other workloads, each trained tiny with one seed; charlm records no params,
# whose weight bands of a transformer's tensors would take most of a minute to draw
WORKLOADS = {
    "mg_toy": {"train.steps": 60, "train.eval_every": 20},
    "charlm": {
        "task.block_size": 16,
        "model.kwargs": {"n_layer": 1, "n_head": 2, "n_embd": 16},
        "train.steps": 4,
        "train.eval_every": 2,
        "task.eval_chars": 2048,
        "task.test_chars": 2048,
        "probes.record": ["outputs"],
    },
    "digits": {"train.steps": 20, "train.eval_every": 10},
}


@pytest.fixture(scope="session")
def workload_store(tmp_path_factory):
    """``workload_store(name)``: the path of a store of one ``WORKLOADS`` experiment, trained
    on first use and kept for the session."""
    built = {}

    def build(name: str):
        if name not in built:
            path = tmp_path_factory.mktemp(name) / f"{name}.db"
            spec = load_experiment(name)
            store = Store(path)
            run_planned(expand(spec, WORKLOADS[name], seeds=[0]), store, experiments=[spec])
            store.close()
            built[name] = path
        return built[name]

    return build
