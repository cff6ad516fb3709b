"""Training time is counted once per stack: stacked runs share their stack's wall time."""

from optlab.analysis.cost import TrainingTime, training_time
from optlab.config import expand, load_experiment
from optlab.store import Store

SPEC = {"name": "costed", "cases": {"x": {}}, "seeds": [1, 2, 3, 4]}


def test_wall_time_is_summed_over_stacks_not_runs(tmp_path):
    experiment = load_experiment(SPEC)
    ids = list(dict.fromkeys(p.run_id for p in expand(experiment)))
    store = Store(tmp_path / "s.db")
    store.plan(expand(experiment), [experiment])
    assert training_time(store.runs("costed")) == TrainingTime(0, 0, 0.0)  # none finished
    assert training_time(store.runs("absent")) == TrainingTime(0, 0, 0.0)
    store.start(ids[:3], "cpu")  # one stack of three runs, 5 s
    store.finish([(i, None, 5.0) for i in ids[:3]], [])
    store.start(ids[3:], "cpu")  # a stack of one, 7 s; diverged runs count too
    store.finish([(ids[3], 40, 7.0)], [])
    t = training_time(store.runs("costed"))
    assert (t.runs, t.stacks, t.seconds) == (4, 2, 12.0)
    assert str(t) == "4 runs trained in 2 stacks, 12.0 s of wall time summed over the stacks"
    assert str(TrainingTime(9, 3, 7_380.0)).endswith(", 2.05 h of wall time summed over the stacks")
    assert "2.0 min" in str(TrainingTime(1, 1, 120.0))
    store.close()
