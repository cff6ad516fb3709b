"""A group's record in memory: what a Ray worker returns, written by the driver at once."""

import numpy as np

from optlab.config import expand, load_experiment
from optlab.store import Store
from optlab.store.record import GroupRecord


def test_a_record_keeps_snapshots_as_they_were_and_writes_them_with_the_workers_path(tmp_path):
    (run,) = expand(load_experiment({"name": "e", "base": {"model": {"name": "exact"}}}))
    store = Store(tmp_path / "s.db")
    store.plan([run])
    store.start([run.run_id], "cpu (the driver's)")  # the driver's lease
    record = GroupRecord()
    assert record.start([run.run_id], "cuda:0 (the worker's)") == [run.run_id]
    weights = np.zeros(3, dtype=np.float32)
    record.log([(run.run_id, "eval", "loss", 0, 0.7)], [(run.run_id, "w", 0, weights)])
    weights += 1  # training goes on in place, as a tensor's numpy view does
    record.finish([(run.run_id, None, 2.0)], [(run.run_id, "test", "loss", 5, 0.25)])
    assert store.statuses([run.run_id]) == {run.run_id: "running"}  # nothing written yet
    record.write_to(store)
    assert store.statuses([run.run_id]) == {run.run_id: "complete"}
    assert store.paths_of([run.run_id]) == {run.run_id: "cuda:0 (the worker's)"}
    assert store.final_metrics() == {run.run_id: {"eval_loss": 0.7, "test_loss": 0.25}}
    np.testing.assert_array_equal(store.array(run.run_id, "w")[0], np.zeros(3))  # step 0's
    assert store.leased([run.run_id]) == set()
    store.close()
