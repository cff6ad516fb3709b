"""The batch-size controller: its two tests on hand-computed gradients, the batch growing
exactly when the norm test fails, masked prefixes, and a controlled run stacked or alone."""

import pytest
import torch

from optlab.config import RunSpec, expand, load_experiment
from optlab.engine import run_planned
from optlab.engine.batch_control import (
    deviation_sums,
    inner_product_statistic,
    norm_statistic,
)
from optlab.engine.train import build_stack, loss_and_grads, stack_losses
from optlab.store import Store


def test_both_statistics_of_two_hand_computed_gradients_and_a_masked_third():
    """g_1 = (2, 1), g_2 = (0, −1): ḡ = (1, 0), ‖ḡ‖² = 1. ‖g_i − ḡ‖² = 2 each, so the norm
    test's Var = 4/(2 − 1) = 4 and Var/(B‖ḡ‖²) = 2; g_iᵀḡ = 2, 0, so (g_iᵀḡ − ‖ḡ‖²)² = 1
    each, Var = 2 and Var/(B‖ḡ‖⁴) = 1. A third, masked example changes nothing."""
    G = torch.tensor([[[2.0, 1.0], [0.0, -1.0], [50.0, 50.0]]], dtype=torch.float64)
    g_bar = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    squared, along = deviation_sums(G, g_bar, mask)
    assert squared.tolist() == [4.0] and along.tolist() == [2.0]
    counts = torch.tensor([2.0], dtype=torch.float64)
    assert norm_statistic(squared, g_bar, counts).tolist() == [2.0]
    assert inner_product_statistic(along, g_bar, counts).tolist() == [1.0]
    # unmasked over the first two alone: the same sums
    assert deviation_sums(G[:, :2], g_bar)[0].tolist() == [4.0]


def _toy(controller: str, threshold: float, steps: int = 6) -> RunSpec:
    """The essay's toy (x_i = [e_i, 1], y_i = 1, ½ squared error) with w = 0 and an SGD step
    so small (η = 1e-9) that w stays 0 to 1e-8: g_i = −x_i exactly enough."""
    field = {"norm_test": "batch_theta", "inner_product": "batch_nu"}[controller]
    return RunSpec.model_validate(
        {
            "task": {"name": "mg_toy", "samples": 100},
            "model": {"name": "linear"},
            "optimizer": {"name": "sgd", "lr": 1e-9, "weight_decay": 0.0},
            "train": {
                "steps": steps,
                "eval_every": 1,
                "batch_size": 2,
                "batch_controller": controller,
                field: threshold,
            },
        }
    )


def _batch_rows(store, run_id):
    m = store.metrics([run_id])
    m = m[m["split"] == "batch"]
    return {name: dict(zip(g["step"], g["value"], strict=True)) for name, g in m.groupby("name")}


def test_the_batch_grows_exactly_when_the_norm_test_fails(tmp_path):
    """At w = 0, g_i = −x_i: over B distinct examples ḡ = −mean x_i, ‖ḡ‖² = 1 + 1/B,
    ‖g_i − ḡ‖² = (B − 1)/B, so Var = 1 and Var/(B‖ḡ‖²) = 1/(B + 1). With θ = 0.3 (θ² = 0.09)
    it fails at B = 2, 4, 8 (1/3, 1/5, 1/9) and holds at 16 (1/17): the batch doubles three
    times, then stays; η follows it (AdaBatch), still too small to move w."""
    spec = _toy("norm_test", 0.3)
    store = Store(tmp_path / "s.db")
    run_planned([_planned(spec)], store)
    rows = _batch_rows(store, spec.run_id)
    assert rows["batch_size"] == {0: 2, 1: 4, 2: 8, 3: 16, 4: 16, 5: 16, 6: 16}
    assert rows["samples"] == {0: 0, 1: 2, 2: 6, 3: 14, 4: 30, 5: 46, 6: 62}
    for step, batch in ((1, 2), (2, 4), (3, 8), (4, 16), (5, 16)):
        assert rows["statistic"][step] == pytest.approx(1 / (batch + 1), rel=1e-6)
    assert 6 not in rows["statistic"]  # no test after the last step


def test_the_inner_product_test_holds_where_every_g_i_has_the_same_projection(tmp_path):
    """At w = 0, g_iᵀḡ = 1 + 1/B = ‖ḡ‖² for every i: Var(g_iᵀḡ) = 0, the test holds at
    any ν and the batch stays 2 (the norm test, at θ = 0.3, grew it)."""
    spec = _toy("inner_product", 1e-3)
    store = Store(tmp_path / "s.db")
    run_planned([_planned(spec)], store)
    rows = _batch_rows(store, spec.run_id)
    assert set(rows["batch_size"].values()) == {2}
    assert max(rows["statistic"].values()) < 1e-12


def _planned(spec):
    from optlab.config import PlannedRun

    return PlannedRun(experiment="t", case="c", spec=spec)


def test_a_masked_prefix_gives_the_gradient_of_that_batch_alone():
    """Two runs on a padded batch of 8: run 0 keeps its first 5 examples, run 1 all 8. Each
    run's loss and gradient equal those of its own examples in a stack of that run alone."""
    spec = RunSpec.model_validate(
        {"model": {"name": "centers", "hidden_dim": 16}, "task": {"n_train": 64}}
    )
    specs = [spec, spec.with_train(seed=7)]
    stack = build_stack(specs, torch.device("cpu"))
    x, y = stack.task.tensors("train")
    xb, yb = torch.stack([x[:8], x[8:16]]), torch.stack([y[:8], y[8:16]])
    mask = torch.tensor([[1.0] * 5 + [0.0] * 3, [1.0] * 8])
    loss, grads = loss_and_grads(stack_losses, stack, xb, yb, [slice(0, 2)], mask)
    for r, keep in ((0, 5), (1, 8)):
        alone = build_stack([specs[r]], torch.device("cpu"))
        want_loss, want = loss_and_grads(
            stack_losses, alone, xb[r : r + 1, :keep], yb[r : r + 1, :keep], [slice(0, 1)]
        )
        torch.testing.assert_close(loss[r : r + 1], want_loss, rtol=1e-6, atol=0)
        for g, w in zip(grads, want, strict=True):
            torch.testing.assert_close(g[r : r + 1], w, rtol=1e-6, atol=1e-7)


def test_a_controlled_run_in_a_stack_equals_the_same_run_alone(tmp_path):
    """Three seeds under the norm test, stacked (each run's batch a masked prefix of the
    stack's largest) and one at a time: every metric, batch sizes included, within 1e-6;
    and the seeds' batches differ at some step, so the masks did work. Not bitwise: a padded
    batch's sums over examples round otherwise (1e-7 per step), and under Adam, which divides
    small gradients by their own size, that grows to 1e-5 by step 70; SGD here keeps it down."""
    spec = load_experiment(
        {"name": "t", "base": {"model": {"name": "centers", "hidden_dim": 32}}, "seeds": [1, 2, 3]}
    )
    planned = expand(
        spec,
        {
            "train.steps": 120,
            "train.eval_every": 10,
            "train.batch_size": 4,
            "train.data": "dataset",
            "train.batch_controller": "norm_test",
            "train.batch_theta": 0.6,
            "train.batch_max": 256,
            "task.n_train": 1000,
            "task.n_eval": 200,
            "task.n_test": 200,
            "optimizer.name": "sgd",
            "optimizer.lr": 0.1,
            "optimizer.weight_decay": 0.0,
        },
    )
    stacked, alone = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    run_planned(planned, stacked)
    for p in planned:
        run_planned([p], alone)
    sizes = []
    for p in planned:
        a, b = (
            s.metrics([p.run_id]).set_index(["split", "name", "step"])["value"]
            for s in (stacked, alone)
        )
        assert a.index.equals(b.index)
        assert ((a - b).abs() <= 1e-6 * b.abs() + 1e-6).all()
        sizes.append(a.loc["batch", "batch_size"].tolist())
    assert len({tuple(s) for s in sizes}) > 1
    assert max(max(s) for s in sizes) > 4


@pytest.mark.parametrize("name", ["sgd", "adamw"])  # the pure rule, and the fused kernel
def test_each_run_steps_with_its_own_lr_factor(name):
    """Two runs with the same weights and gradients, run 1's η doubled (its batch grew ×2
    under batch_lr 'scale'): SGD's step −ηg doubles exactly; AdamW's first step, −η·sign(g)
    up to ε, doubles too (no decay)."""
    from optlab.config import OptimizerSpec
    from optlab.engine.optimizer import StackedOptimizer

    spec = OptimizerSpec(name=name, lr=0.1, weight_decay=0.0)
    params = {"w": torch.ones(2, 3)}
    optimizer = StackedOptimizer([spec, spec], params, steps=10, per_run_lr=True)
    optimizer.set_run_lr([1.0, 2.0])
    optimizer.step([torch.tensor([[0.5, -1.0, 2.0]] * 2)])
    step = params["w"] - 1
    want = [-0.05, 0.1, -0.2] if name == "sgd" else [-0.1, 0.1, -0.1]
    torch.testing.assert_close(step[0], torch.tensor(want), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(step[1], 2 * torch.tensor(want), rtol=1e-6, atol=1e-7)


def test_grad_stats_reads_each_runs_own_batch_under_the_controller(tmp_path):
    """snr = ‖ḡ‖²/(tr Σ/B) at the B the run stepped with: under the norm test (θ = 0.3 on
    the toy) that is 2, 4, 8, then 16, the controller's, not the schedule's constant 2."""
    spec = _toy("norm_test", 0.3).model_copy(deep=True)
    spec = RunSpec.model_validate({**spec.model_dump(), "probes": {"record": ["grad_stats"]}})
    store = Store(tmp_path / "s.db")
    run_planned([_planned(spec)], store)
    rows = _batch_rows(store, spec.run_id)
    m = store.metrics([spec.run_id])
    stats = {n: dict(zip(g["step"], g["value"], strict=True)) for n, g in m.groupby("name")}
    for step in range(1, 7):
        batch = stats["snr"][step] * stats["trace_var"][step] / stats["mean_sq"][step]
        assert batch == pytest.approx(rows["batch_size"][step - 1], rel=1e-5)
