"""The stacked optimizer: every rule stacks exactly, schedules, decay groups, a growing batch."""

import pytest
import torch

from optlab.config import OptimizerSpec, RunSpec
from optlab.engine.data import Batches
from optlab.engine.optimizer import StackedOptimizer
from optlab.engine.train import task_for

RULES = [
    {"name": "nested_adam", "bias_correction": "exact"},
    {"name": "blockwise_adam", "blocks": "block", "block_size": 5},
    {"name": "harmonic"},
    {"name": "signsgd"},
    {"name": "signum", "decay": "dropout"},
    {"name": "adamw", "decay": "grad_scaled", "decay_groups": {"b": 0.0}},
    {"name": "adamw", "decay": "sign_ema", "lr_schedule": {"kind": "cosine", "warmup": 3}},
    {"name": "graft", "magnitude": "sgd", "direction": {"name": "adam", "eps": 1e-6}},
    {"name": "graft", "magnitude": "adamw", "direction": "signum", "graft": "global"},
]


def _params(runs, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(runs, 4, 3, generator=g, dtype=torch.float64)
    b = torch.randn(runs, 3, generator=g, dtype=torch.float64)
    return {"w": w, "b": b}


def _train(specs, params, seeds, steps=30):
    opt = StackedOptimizer(specs, params, steps, seeds)
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        noise = {
            k: torch.randn(p.shape[1:], generator=gen, dtype=p.dtype) for k, p in params.items()
        }
        opt.step([p + noise[k] for k, p in params.items()])  # ∇ of ½‖θ + noise‖²-like pull
    return params


@pytest.mark.parametrize("fields", RULES, ids=lambda f: f["name"] + "-" + str(len(f)))
def test_every_rule_stacked_equals_each_run_alone(fields):
    """Three runs with three learning rates and seeds in one stack = each run in a stack of one."""
    lrs, seeds = [1e-3, 1e-2, 3e-2], [1, 2, 3]
    specs = [OptimizerSpec(**fields, lr=lr, weight_decay=0.1) for lr in lrs]
    stacked = _train(specs, _params(3), seeds)
    for r in range(3):
        alone = _train(
            specs[r : r + 1],
            {k: v[r : r + 1].clone() for k, v in _params(3).items()},
            seeds[r : r + 1],
        )
        for k in stacked:
            assert torch.allclose(stacked[k][r : r + 1], alone[k], rtol=1e-12, atol=1e-14)
    moved = _params(3)
    assert not torch.allclose(stacked["w"], moved["w"])


def test_lr_schedule_through_eps_equals_the_lr_schedule_in_the_engine():
    schedule = {"kind": "step", "milestones": [10, 20], "gamma": 0.3, "warmup": 5}
    by_lr = [OptimizerSpec(name="adamw", lr=3e-2, weight_decay=0.0, lr_schedule=schedule)]
    by_eps = [
        by_lr[0].model_copy(
            update={
                "eps_schedule": OptimizerSpec(eps_schedule={"kind": "lr_equivalent"}).eps_schedule
            }
        )
    ]
    a, b = _train(by_lr, _params(1), [1]), _train(by_eps, _params(1), [1])
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-10, atol=1e-13)


def test_decay_groups_give_matching_parameters_their_own_decay():
    """AdamW with zero gradients only decays: w by (1 − ηλ) per step, b (λ = 0 by pattern) not."""
    params = _params(2)
    w0, b0 = params["w"].clone(), params["b"].clone()
    specs = [OptimizerSpec(lr=0.1, weight_decay=0.5, decay_groups={"b": 0.0})] * 2
    opt = StackedOptimizer(specs, params, 3, [0, 1])
    for _ in range(3):
        opt.step([torch.zeros_like(p) for p in params.values()])
    assert torch.allclose(params["w"], w0 * 0.95**3) and torch.equal(params["b"], b0)


def test_a_growing_batch_keeps_lr_over_batch_fixed_and_streams_fresh_points():
    spec = RunSpec.model_validate(
        {
            "train": {"steps": 6, "batch_size": 4, "batch_milestones": [2, 4], "batch_factor": 2},
            "task": {"n_eval": 10, "n_test": 10},
        }
    )
    sizes = spec.train.batch_sizes
    assert sizes == [4, 4, 8, 8, 16, 16] and spec.n_train == 56
    opt = StackedOptimizer([spec.optimizer], _params(1), 6, [0], sizes)
    assert [opt.lr_scale(t) for t in range(1, 7)] == [1, 1, 2, 2, 4, 4]
    env = task_for(spec)
    batches = Batches(env, "stream", sizes, [0], torch.device("cpu"))
    xs = [batches(t)[0][0] for t in range(6)]
    assert [len(x) for x in xs] == sizes
    assert torch.equal(
        torch.cat(xs), env.tensors("train", torch.device("cpu"))[0]
    )  # each point once


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "adamw"},
        {"name": "adamw", "decay": "none", "decay_groups": {"b": 0.0}},
        {"name": "adamw", "decay": "l1"},
        {"name": "adamw", "eps_schedule": {"kind": "lr_equivalent"}},
        {"name": "adam"},
    ],
)
def test_the_numeric_path_names_the_update_the_engine_takes(spec):
    from optlab.engine.optimizer import update_path

    opt = OptimizerSpec.model_validate(spec)
    params = {k: v.float() for k, v in _params(2).items()}
    fused = StackedOptimizer([opt, opt], params, 10).fused is not None
    path = update_path(opt, 10, torch.float32, torch.device("cpu"))
    assert path == ("fused adamw" if fused else f"pure {opt.name}")
    assert fused == (
        spec in ({"name": "adamw"}, {"name": "adamw", "decay": "none", "decay_groups": {"b": 0.0}})
    )


def test_an_import_path_optimizer_takes_the_spec_fields_set_and_equals_torch():
    """torch.optim.RMSprop named by import path with weight_decay and momentum set: 30 steps
    bitwise those of torch.optim.RMSprop(lr, weight_decay=0.1, momentum=0.9) in a plain
    loop; without the two fields (what the engine ran before) the weights end elsewhere."""
    spec = OptimizerSpec(name="torch.optim.RMSprop", lr=1e-2, weight_decay=0.1, momentum=0.9)
    assert spec.torch_arguments() == {"lr": 1e-2, "weight_decay": 0.1, "momentum": 0.9}
    engine = _train([spec], _params(1), [0])
    plain = {k: v[0].clone().requires_grad_() for k, v in _params(1).items()}
    opt = torch.optim.RMSprop(plain.values(), lr=1e-2, weight_decay=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(7)  # the noise of ``_train``, drawn in its order
    for _ in range(30):
        noise = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in plain.items()}
        for k, p in plain.items():
            p.grad = (p + noise[k]).detach()
        opt.step()
    for k in plain:
        assert torch.equal(engine[k][0], plain[k].detach())
    bare = _train([OptimizerSpec(name="torch.optim.RMSprop", lr=1e-2)], _params(1), [0])
    assert not torch.allclose(bare["w"], engine["w"], atol=1e-3)


def test_an_import_path_optimizer_trains_like_the_builtin_rule_with_the_same_fields(tmp_path):
    """A short run: torch.optim.RMSprop by import path and optlab's rmsprop, both with
    weight_decay 0.1 and momentum 0.5, end at the same training and test losses."""
    from optlab.config import expand, load_experiment
    from optlab.engine import run_planned
    from optlab.store import Store

    base = {
        "model": {"name": "plus_minus"},
        "train": {"steps": 40, "eval_every": 20},
        "task": {"n_eval": 100, "n_test": 100},
        "optimizer": {"lr": 1e-2, "weight_decay": 0.1, "momentum": 0.5},
    }
    cases = {
        "torch": {"optimizer.name": "torch.optim.RMSprop"},
        "optlab": {"optimizer.name": "rmsprop"},
    }
    planned = expand(load_experiment({"name": "t", "base": base, "cases": cases, "seeds": [1]}))
    store = Store(tmp_path / "s.db")
    run_planned(planned, store)
    finals = store.final_metrics()
    a, b = (finals[p.run_id] for p in planned)
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
    curves = store.metrics([p.run_id for p in planned])
    train = curves[curves.split == "train"].pivot(index="step", columns="run_id", values="value")
    assert len(train) == 40 and train.iloc[-1].iloc[0] == pytest.approx(
        train.iloc[-1].iloc[1], rel=1e-5
    )
    store.close()
