"""Sweeps: stacks and their order, resuming a killed sweep, the process pool."""

import pytest

from optlab.config import expand, load_experiment
from optlab.engine import run_planned
from optlab.engine.sweep import balance, cost, group_runs
from optlab.engine.train import train_group
from optlab.store import Store

SMALL = {"train.steps": 40, "train.eval_every": 20, "task.n_eval": 100, "task.n_test": 100}


def _sweep(seeds=(1, 2)):
    spec = load_experiment(
        {
            "name": "sweep",
            "base": {"model": {"name": "final", "hidden_dim": 8}},
            "cases": {"relu": {}, "gelu": {"model.nonlinearity": "gelu"}},
            "tune": {"optimizer.lr": [1e-3, 1e-2]},
            "seeds": list(seeds),
        }
    )
    return expand(spec, SMALL)


def test_stacks_split_by_shape_and_size_costliest_first():
    specs = [p.spec for p in _sweep(seeds=(1, 2, 3))]
    stacks = group_runs(specs, max_runs=4)
    assert [len(s) for s in stacks] == [3, 3, 3, 3]  # 2 shapes × 6 runs, cut evenly below 4
    assert all(len({s.model.nonlinearity for s in stack}) == 1 for stack in stacks)
    assert sorted(s.run_id for stack in stacks for s in stack) == sorted(s.run_id for s in specs)
    wide = [
        s.model_copy(update={"model": s.model.model_copy(update={"hidden_dim": 64})})
        for s in specs[:2]
    ]
    assert group_runs(specs + wide, max_runs=4)[0] == wide  # the costliest stack first


class Kill(Exception):
    pass


def test_a_killed_sweep_trains_only_what_was_missing(tmp_path):
    planned = _sweep()
    store = Store(tmp_path / "s.db")
    seen = []

    def kill_in_second_stack(n):
        seen.append(n)
        if sum(seen) > 4 * 40:  # past the first stack of 4 runs × 40 steps
            raise Kill

    with pytest.raises(Kill):
        run_planned(planned, store, kill_in_second_stack)
    done = [i for i, s in store.statuses([p.run_id for p in planned]).items() if s == "complete"]
    assert len(done) == 4
    retrained = run_planned(planned, store)
    assert len(retrained) == 4 and not {o.run_id for o in retrained} & set(done)
    assert run_planned(planned, store) == []


def test_process_pool_gives_the_results_of_one_process(tmp_path):
    planned = _sweep(seeds=(1,))
    one, pool = Store(tmp_path / "one.db"), Store(tmp_path / "pool.db")
    a = {o.run_id: o for o in run_planned(planned, one)}
    b = {o.run_id: o for o in run_planned(planned, pool, workers=2, max_runs=1)}
    assert a.keys() == b.keys() and len(a) == 4
    for run_id in a:
        assert b[run_id].test_loss == pytest.approx(a[run_id].test_loss, rel=1e-5)
    assert set(pool.statuses(list(a)).values()) == {"complete"}


def test_a_stack_heavier_than_a_workers_share_is_split_into_shares():
    ladder = expand(load_experiment("ladder"), SMALL, seeds=[1, 2, 3, 4, 5])
    specs = [p.spec for p in ladder if p.case in ("centers", "exact")]
    stacks = group_runs(specs)
    assert sorted(len(s) for s in stacks) == [5, 5]
    split = balance(stacks, workers=2)  # centers (width 2048) is nearly all the work
    assert [len(s) for s in split] == [3, 2, 5]
    assert [s[0].model.name for s in split] == ["centers", "centers", "exact"]
    assert sorted(r.run_id for s in split for r in s) == sorted(s.run_id for s in specs)
    assert balance(stacks, workers=1) == sorted(stacks, key=cost, reverse=True)


@pytest.mark.parametrize("rung", ["centers", "plus_minus"])
def test_a_runs_numbers_are_bitwise_the_same_in_any_stack(tmp_path, rung):
    """On one thread, as a sweep's workers run when there are as many as cores (the only
    case in which it splits stacks), split stacks change how long a sweep takes, never its
    results: the fused AdamW step sees each run's tensors apart and eval chunks do not
    depend on the stack's size."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_split_and_whole(tmp_path, rung)
    finally:
        torch.set_num_threads(threads)


def _train_split_and_whole(tmp_path, rung):
    small = {**SMALL, "train.steps": 120, "train.eval_every": 40}
    planned = [p for p in expand(load_experiment("ladder"), small, seeds=[1, 2, 3, 4, 5])]
    specs = [p.spec for p in planned if p.case == rung]
    whole = train_group(specs, Store(tmp_path / "a.db"))
    parts = train_group(specs[:3], Store(tmp_path / "b.db"))
    parts += train_group(specs[3:], Store(tmp_path / "b.db"))
    assert [(o.test_loss, o.test_accuracy) for o in whole] == [
        (o.test_loss, o.test_accuracy) for o in parts
    ]


def test_fresh_retrains_only_the_runs_computed_along_another_path(tmp_path):
    import sqlite3

    planned = _sweep(seeds=(1,))[:2]
    store = Store(tmp_path / "s.db")
    run_planned(planned, store)
    ids = [p.run_id for p in planned]
    now = store.paths_of(ids)[ids[0]]
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE runs SET numeric_path = 'torch 0.1, cpu' WHERE id = ?", (ids[0],))
    assert run_planned(planned, store) == []  # done is done, along any path
    assert [o.run_id for o in run_planned(planned, store, fresh=True)] == ids[:1]
    assert store.paths_of(ids) == {ids[0]: now, ids[1]: now}
    assert run_planned(planned, store, fresh=True) == []
