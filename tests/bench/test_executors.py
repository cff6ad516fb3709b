"""Ray against the local pool on one sweep: the figures `optlab bench --executors` prints."""

import ray

from optlab.bench.executors import ray_vs_local_pool
from optlab.config import expand, load_experiment


def test_ray_vs_local_pool_is_the_ratio_of_the_two_sweeps_rates():
    spec = load_experiment(
        {
            "name": "executors",
            "base": {"model": {"name": "final", "hidden_dim": 8}},
            "cases": {"relu": {}, "gelu": {"model.nonlinearity": "gelu"}},
            "seeds": [1, 2],
        }
    )
    small = {"train.steps": 20, "train.eval_every": 10, "task.n_eval": 50, "task.n_test": 50}
    out = ray_vs_local_pool(expand(spec, small))
    assert out["runs"] == 4
    assert out["vs_local_pool"] == out["ray_run_steps_per_s"] / out["local_pool_run_steps_per_s"]
    assert out["ray_run_steps_per_s"] > 0 and out["start_s"] > 0
    assert not ray.is_initialized()  # the local instance it started is gone
