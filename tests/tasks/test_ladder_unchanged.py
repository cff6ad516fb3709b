"""The task interface changed nothing for the Voronoi environment: its JSON, the ladder's run
ids and its quick-profile metrics (100 steps, seed 42) equal those recorded by the code from
before tasks were pluggable (``ladder_quick_before.json``), bitwise on the CPU that recorded
them; on another CPU, whose BLAS rounds float32 otherwise, to a tolerance.

The golden was re-recorded, by this test's own steps, when the models' init came to follow
the original code's order of draws (nn.Linear's own init, each module's construction order)
and learn_offset's learning rate became 5e-3: on purpose, its metrics and learn_offset's run
id moved; the environment and the other run ids did not. And again when eval chunks came
to depend on the model's width alone (so that a run's eval is bitwise the same in any
stack): 32 of its 1,395 values moved, eval and test losses and output sums only, by at most
1.5e-7 relative (float32 rounding of sums taken in other chunks); every training loss and
accuracy stayed bitwise the same. And again when the eval forward came to compute thin
products as outer products and the head from a contiguous Wᵀ: 24 values moved, eval and
test losses and output statistics only, by at most 7.5e-7 relative; every training loss
and accuracy stayed bitwise the same."""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from optlab.bench.measure import device_name
from optlab.config import expand, load_experiment
from optlab.engine import run_planned
from optlab.engine.train import task_for
from optlab.store import Store

BEFORE = json.loads((Path(__file__).parent / "ladder_quick_before.json").read_text())


def test_environment_run_ids_and_ladder_metrics_are_unchanged(tmp_path):
    planned = expand(load_experiment("ladder"), {"train.steps": 100}, profile="quick", seeds=[42])
    summary = json.dumps(task_for(planned[0].spec).summary())
    assert hashlib.sha256(summary.encode()).hexdigest() == BEFORE["env_sha256"]
    assert {p.case: p.run_id for p in planned} == BEFORE["run_ids"]
    store = Store(tmp_path / "s.db")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as recorded: with more, torch splits reductions otherwise
    try:
        run_planned(planned, store)
    finally:
        torch.set_num_threads(threads)
    case = {p.run_id: p.case for p in planned}
    m = store.metrics(list(case))
    rows = sorted(
        [case[r.run_id], r.split, r.name, int(r.step), float(r.value)] for r in m.itertuples()
    )
    assert [r[:4] for r in rows] == [r[:4] for r in BEFORE["rows"]]
    got, want = (np.array([r[4] for r in rs]) for rs in (rows, BEFORE["rows"]))
    if device_name() == BEFORE["device"]:
        assert np.array_equal(got, want)
    else:
        assert np.allclose(got, want, rtol=1e-3, atol=1e-4)
