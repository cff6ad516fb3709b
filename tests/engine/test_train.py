"""The stacked engine: stacking equals one run at a time, divergence, resume, skip-when-done."""

import shutil

import pytest
import torch

from optlab.config import expand, load_experiment
from optlab.engine import run_planned
from optlab.store import Store

SMALL = {"train.steps": 60, "train.eval_every": 20, "task.n_eval": 200, "task.n_test": 200}


def _plan(model="plus_minus", seeds=(1, 2, 3), grid=None, **overrides):
    spec = load_experiment(
        {"name": "t", "base": {"model": {"name": model}}, "seeds": list(seeds), "grid": grid or {}}
    )
    return expand(spec, {**SMALL, **overrides})


def _curves(store, run_id):
    m = store.metrics([run_id])
    return m.set_index(["split", "name", "step"])["value"]


def _tensors(curves):
    return {name.split("/")[0] for name in curves.loc["params"].index.get_level_values("name")}


@pytest.mark.parametrize("model", ["plus_minus", "final"])
def test_stacked_group_equals_runs_one_at_a_time(tmp_path, model):
    planned = _plan(
        model,
        grid={"optimizer.lr": [1e-2, 3e-3]},
        **{"model.hidden_dim": 32} if model == "final" else {},
    )
    stacked, alone = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    assert len(run_planned(planned, stacked)) == 6
    for p in planned:
        run_planned([p], alone)
    for p in planned:
        a, b = _curves(stacked, p.run_id), _curves(alone, p.run_id)
        core = a.loc[["train", "eval", "test"]]
        assert len(core) == 60 + 2 * 4 + 2  # train loss per step, eval at 0/20/40/60, test
        assert len(a) == len(b) and len(a.loc["params"]) == 4 * 6 * len(_tensors(a))
        assert ((a - b).abs() <= 1e-5 * b.abs() + 1e-6).all()  # probes included


def test_divergence_is_recorded_and_the_group_goes_on(tmp_path):
    planned = _plan(
        "final",
        seeds=(1,),
        grid={"optimizer.lr": [1e-3, 1e12]},
        **{"optimizer.name": "sgd", "model.hidden_dim": 16},
    )
    store = Store(tmp_path / "s.db")
    outcomes = {o.run_id: o for o in run_planned(planned, store)}
    ok, bad = (outcomes[p.run_id] for p in planned)
    assert ok.diverged_step is None and ok.test_accuracy > 0
    assert bad.diverged_step is not None and 1 <= bad.diverged_step <= 60
    assert store.statuses([p.run_id for p in planned]) == {
        planned[0].run_id: "complete",
        planned[1].run_id: "diverged",
    }


def test_interrupted_run_is_trained_again_and_done_runs_are_not(tmp_path):
    planned = _plan(seeds=(1,))
    store = Store(tmp_path / "s.db")

    def interrupt(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_planned(planned, store, on_steps=interrupt)
    rid = planned[0].run_id
    assert store.statuses([rid]) == {rid: "running"}
    # 60 train losses, eval loss/accuracy at 4 steps, test loss/accuracy, and at each of the 4
    # recorded steps the default probes: 4 tensors × 6 stats, 4 outputs, 4 scalars (offset,
    # scale, plus_minus/0, plus_minus/1)
    rows = 60 + 2 * 4 + 2 + 4 * (4 * 6 + 4 + 4)
    assert 0 < len(store.metrics([rid])) < rows  # a partial record, not marked done
    assert len(run_planned(planned, store)) == 1
    assert store.statuses([rid]) == {rid: "complete"} and len(store.metrics([rid])) == rows
    assert run_planned(planned, store) == []  # complete: never trained again


def test_dataset_mode_is_deterministic_and_learns(tmp_path):
    """Per-run shuffles come from the training seed: the same plan in two stores gives the same
    curves; the full-batch case (batch >= n_train) trains on the whole set every step."""
    shuffled = _plan(
        seeds=(1, 2), **{"train.data": "dataset", "task.n_train": 100, "train.batch_size": 10}
    )
    full = _plan(
        seeds=(1,), **{"train.data": "dataset", "task.n_train": 50, "train.batch_size": 64}
    )
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    for store in (a, b):
        assert all(o.diverged_step is None for o in run_planned(shuffled + full, store))
    for p in shuffled + full:
        assert _curves(a, p.run_id).equals(_curves(b, p.run_id))
    train = _curves(a, full[0].run_id)["train"]["loss"]
    assert train.iloc[-1] < train.iloc[0]


def test_import_path_optimizer_trains_like_the_builtin_rule(tmp_path):
    """torch.optim.SGD named by import path gives the built-in sgd rule's curves."""
    store = Store(tmp_path / "s.db")
    common = {"optimizer.lr": 1e-2, "optimizer.weight_decay": 0.0}
    builtin = _plan(seeds=(1,), **{**common, "optimizer.name": "sgd"})
    torch_path = _plan(seeds=(1,), **{**common, "optimizer.name": "torch.optim.SGD"})
    run_planned(builtin + torch_path, store)
    a, b = _curves(store, builtin[0].run_id), _curves(store, torch_path[0].run_id)
    assert ((a - b).abs() <= 1e-5 * b.abs() + 1e-6).all()
    assert a["train"]["loss"].iloc[-1] != a["train"]["loss"].iloc[0]


def test_a_growing_batch_trains_in_both_data_modes(tmp_path):
    """Batch 8 → 16 → 32 at steps 20 and 40: every run completes its 60 steps and learns."""
    grow = {"train.batch_size": 8, "train.batch_milestones": [20, 40], "train.batch_factor": 2}
    stream = _plan(seeds=(1,), **grow)
    dataset = _plan(seeds=(1,), **grow, **{"train.data": "dataset", "task.n_train": 100})
    assert stream[0].spec.n_train == 20 * 8 + 20 * 16 + 20 * 32
    store = Store(tmp_path / "s.db")
    assert all(o.diverged_step is None for o in run_planned(stream + dataset, store))
    for p in stream + dataset:
        train = _curves(store, p.run_id)["train"]["loss"]
        assert len(train) == 60 and train.iloc[-10:].mean() < train.iloc[:10].mean()


@pytest.mark.parametrize("model", ["centers", "final"])
def test_stacked_and_one_run_paths_end_at_the_same_parameters_after_500_steps(tmp_path, model):
    """Six runs (3 seeds × 2 learning rates) in one stack against each run alone, compared
    tensor by tensor at step 500 (both take the fused AdamW path, run by run in the stack)."""
    planned = _plan(
        model,
        grid={"optimizer.lr": [1e-2, 3e-3]},
        **{
            "model.hidden_dim": 16,
            "train.steps": 500,
            "train.eval_every": 250,
            "task.n_eval": 64,
            "task.n_test": 64,
            "probes.record": ["snapshots"],
        },
    )
    stacked, alone = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    run_planned(planned, stacked)
    for p in planned:
        run_planned([p], alone)
    names = stacked.array_names(planned[0].run_id)
    assert len(names) == (4 if model == "final" else 5) + (4 if model == "final" else 0)
    worst = 0.0
    for p in planned:
        for name in names:
            a, b = stacked.array(p.run_id, name)[500], alone.array(p.run_id, name)[500]
            worst = max(worst, float(abs(a - b).max() / abs(b).max()))
    assert worst <= 1e-5


def test_a_stack_trained_in_slices_of_runs_has_bitwise_the_same_losses_and_gradients():
    import torch

    from optlab.config import ModelSpec
    from optlab.engine.train import Stack, loss_and_grads, run_slices, stack_losses
    from optlab.models import build_model
    from optlab.stacking import stack_runs
    from optlab.tasks.voronoi import make_environment

    assert run_slices(32, 32, 2048) == [slice(i, i + 4) for i in range(0, 32, 4)]  # 2^18 each
    assert run_slices(3, 32, 138) == [slice(0, 3)]
    env = make_environment(2, 2, 64, 10, 10, 42, "paper")
    model = build_model(ModelSpec(name="centers", hidden_dim=64), env)
    params = stack_runs([model.init(torch.Generator().manual_seed(s)) for s in range(5)])
    params = {k: v.requires_grad_() for k, v in params.items()}
    x, y = env.tensors("train")
    stack = Stack(env, model, params, {}, torch.float32, "fp32")
    whole = loss_and_grads(stack_losses, stack, x[None], y[None], [slice(0, 5)])
    parts = loss_and_grads(
        stack_losses, stack, x[None], y[None], [slice(0, 2), slice(2, 4), slice(4, 5)]
    )
    assert torch.equal(whole[0], parts[0])
    assert all(torch.equal(a, b) for a, b in zip(whole[1], parts[1], strict=True))
    assert all(g.abs().sum() > 0 for g in parts[1])


needs_compiler = pytest.mark.skipif(
    shutil.which("c++") is None, reason="torch.compile's Inductor needs a C++ compiler"
)


@needs_compiler
@pytest.mark.parametrize("model", ["plus_minus", "centers"])
def test_compiled_step_equals_eager_up_to_rounding(model):
    """The compiled forward and loss (``train.compile``) give each run's loss and every
    gradient of a 4-run stack as eager does, to float32 rounding."""
    import torch
    from torch._dynamo.utils import counters

    from optlab.config import ModelSpec
    from optlab.engine.train import compiled_stack_losses, stack_losses
    from optlab.models import build_model
    from optlab.stacking import stack_runs
    from optlab.tasks.voronoi import make_environment

    env = make_environment(2, 2, 64, 8, 8, 42, "paper")
    net = build_model(ModelSpec(name=model, hidden_dim=64 if model == "centers" else None), env)
    params = stack_runs([net.init(torch.Generator().manual_seed(s)) for s in range(4)])
    params = {k: v.requires_grad_() for k, v in params.items()}
    x, y = (t[None, :32] for t in env.tensors("train"))
    results = []
    torch._dynamo.reset()  # so that this model compiles here, whatever ran before
    captured = counters["stats"]["calls_captured"]
    for losses_of in (stack_losses, compiled_stack_losses()):
        loss = losses_of(net, params, x, y)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
        results.append([loss.detach(), *grads])
    assert counters["stats"]["calls_captured"] > captured  # a graph ran, not eager again
    for eager, compiled in zip(*results, strict=True):
        assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6 * float(eager.abs().max()))
    assert float(results[0][0].min()) > 0.1  # a loss with gradients worth comparing


@needs_compiler
def test_a_compiled_sweep_trains_like_the_eager_one_and_says_so(tmp_path):
    planned = _plan(**{"train.steps": 60})
    eager, compiled = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    run_planned(planned, eager)
    run_planned(_plan(**{"train.steps": 60, "train.compile": True}), compiled)
    assert [p.run_id for p in _plan(**{"train.compile": True})] == [
        p.run_id for p in _plan()
    ]  # how a run trains is not what it is, as for the device
    torch_version = f"torch {torch.__version__}"
    path = f"{torch_version}, cpu, float32, compiled, subnormals flushed | fused adamw"
    assert set(compiled.runs()["numeric_path"]) == {path}
    assert set(eager.runs()["numeric_path"]) == {path.replace("compiled", "eager")}
    for p in planned:
        a, b = _curves(eager, p.run_id), _curves(compiled, p.run_id)
        assert abs(a["train"]["loss"] - b["train"]["loss"]).max() < 1e-4


def test_center_labels_learns_which_center_is_which_class(tmp_path):
    """End to end through the engine (forward, narrow head, fused AdamW): the rung that
    only learns its k × C head reaches the paper's ≈ 100% within 300 steps of batch 32;
    a step that scrambled the head's update leaves it near chance (0.49 measured)."""
    (planned,) = _plan(
        "center_labels",
        seeds=(42,),
        **{"train.steps": 300, "train.eval_every": 100, "optimizer.lr": 1e-2},
    )
    store = Store(tmp_path / "s.db")
    (outcome,) = run_planned([planned], store)
    assert outcome.test_accuracy > 0.97


def test_first_divergence_is_each_runs_first_non_finite_step_of_the_window():
    import torch

    from optlab.engine.train import first_divergence

    nan, inf = float("nan"), float("inf")
    losses = torch.tensor([[0.5, 0.5, inf], [0.4, 0.4, 0.3], [0.3, nan, 0.2], [0.2, inf, inf]])
    before = torch.tensor([-1, -1, 5])  # run 2 diverged at step 5, in an earlier window
    assert first_divergence(losses, 10, before).tolist() == [-1, 13, 5]


def test_an_eval_in_many_pieces_equals_it_in_one(monkeypatch):
    """Wide stacks are evaluated a slice of runs times a chunk of points at a time: the
    figures must not depend on the cut (predictions exactly, sums to rounding)."""
    import torch

    from optlab.config import ModelSpec
    from optlab.engine import train
    from optlab.models import build_model
    from optlab.stacking import stack_runs
    from optlab.tasks.voronoi import make_environment

    env = make_environment(2, 2, 8, 300, 8, 42, "paper")
    model = build_model(ModelSpec(name="centers", hidden_dim=64), env)
    params = stack_runs([model.init(torch.Generator().manual_seed(s)) for s in range(5)])
    x, y = env.tensors("eval")
    whole = train.evaluate(model, params, x, y, 5, keep_predictions=True)
    monkeypatch.setattr(train, "EVAL_CHUNK_ELEMENTS", 64 * 70)  # 2 runs × 35 points a piece
    monkeypatch.setattr(train, "EVAL_MIN_POINTS", 35)
    assert train.eval_pieces(5, 300, 64) == ([slice(0, 2), slice(2, 4), slice(4, 5)], 35)
    pieces = train.evaluate(model, params, x, y, 5, keep_predictions=True)
    assert torch.equal(pieces.predictions, whole.predictions)
    assert torch.equal(pieces.accuracy, whole.accuracy)
    assert torch.allclose(pieces.loss, whole.loss, rtol=1e-6)
    for name, value in whole.outputs.items():
        assert torch.allclose(pieces.outputs[name], value, rtol=1e-5), name


def test_batch_statistics_at_eval_normalize_over_the_whole_eval_set(monkeypatch):
    """A BatchNorm without running statistics evaluates the set as one batch, however small
    the engine's chunks: the same loss as the module itself on the whole set."""
    import torch

    from optlab.config import ModelSpec
    from optlab.engine import train
    from optlab.models import build_model
    from optlab.stacking import stack_runs
    from optlab.tasks.digits import make_digits

    task = make_digits()
    kwargs = {"width": 16, "normalization": "batchnorm", "running_stats": False}
    model = build_model(ModelSpec(name="mlp", kwargs=kwargs), task)
    g = torch.Generator().manual_seed(0)
    state = stack_runs([{**model.init(g), **model.init_buffers(g)}])
    x, y = task.tensors("eval")
    monkeypatch.setattr(train, "EVAL_MIN_POINTS", 7)
    monkeypatch.setattr(train, "EVAL_CHUNK_ELEMENTS", 7 * 16)
    ev = train.evaluate(model, state, x, y, 1)
    module = model.base.eval()
    torch.nn.utils.vector_to_parameters(
        torch.cat([state[k][0].flatten() for k, _ in module.named_parameters()]),
        module.parameters(),
    )
    whole = torch.nn.functional.cross_entropy(module(x), y)
    assert float(ev.loss[0]) == pytest.approx(float(whole), rel=1e-6)


def test_flushing_subnormals_is_how_a_run_is_computed_not_what_it_is(tmp_path):
    """train.flush_subnormals (on by default) keeps the run id, is noted in the store's
    numeric path, and flushes: a subnormal float (1e-39 < 2^-126 ≈ 1.2e-38) times one is 0;
    turned off, it stays subnormal."""
    import torch

    (flushed,) = _plan("plus_minus", seeds=(1,))
    (kept,) = _plan("plus_minus", seeds=(1,), **{"train.flush_subnormals": False})
    assert flushed.spec.train.flush_subnormals and flushed.run_id == kept.run_id
    try:
        eager = f"torch {torch.__version__}, cpu, float32, eager"
        for spec, path in (
            (flushed, eager + ", subnormals flushed | fused adamw"),
            (kept, eager + " | fused adamw"),
        ):
            store = Store(tmp_path / f"{spec is flushed}.db")
            run_planned([spec], store)
            assert store.runs()["numeric_path"].tolist() == [path]
            assert ((torch.tensor([1e-39]) * 1.0).item() == 0.0) == (spec is flushed)
    finally:
        torch.set_flush_denormal(False)
