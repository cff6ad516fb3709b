"""Scale-invariant weights (Grosse (2022), CSC 2541 lecture 5): the invariance probe by hand
and through the engine, and the effective learning rate of each rule on an exactly
scale-invariant loss."""

import math

import pytest
import torch

from optlab.config import OptimizerSpec, RunSpec
from optlab.engine.optimizer import StackedOptimizer
from optlab.engine.train import train_group
from optlab.probes.base import Evaluation, Observation
from optlab.probes.invariance import angle, effective_lr, invariance
from optlab.probes.optimizer import make_update, split_update
from optlab.store import Store

NO_EVAL = Evaluation(torch.zeros(2), torch.zeros(2), {}, None)
INVARIANT = ("0.weight", "3.weight")  # the digits MLP's two hidden Linears, each into a BatchNorm


def _step(spec: OptimizerSpec, w: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """One recorded step of ``spec`` on the tensor w with gradient g: the invariance probe."""
    params = {"w": w.clone()}
    opt = StackedOptimizer([spec] * w.shape[0], params)
    before, adaptive = split_update(opt, params, [g])
    opt.step([g])
    update = make_update(before, adaptive, params, [g])
    obs = Observation(
        step=1,
        params=params,
        evaluation=NO_EVAL,
        update=update,
        optimizer=opt,
        scale_invariant=("w",),
    )
    return invariance(obs)


def test_one_sgd_step_by_hand():
    # η = 0.1. Run 0: w = (3, 4) ⊥ g = (4, −3), so w' = (2.6, 4.3), ‖w'‖² = 25.25 = 25 + η²·25:
    # cosine 0, residual 0, angle atan(η‖g‖/‖w‖) = atan(0.1). Run 1: g = (−1, 0) ∥ w = (1, 0):
    # w' = (1.1, 0), cosine −1, residual (1.21 − 1 − 0.01)/1.21, angle 0.
    spec = OptimizerSpec(name="sgd", lr=0.1, weight_decay=0.0)
    w = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[4.0, -3.0], [-1.0, 0.0]], dtype=torch.float64)
    out = _step(spec, w, g)
    assert out["w/grad_cosine"].tolist() == pytest.approx([0.0, -1.0], abs=1e-15)
    assert out["w/norm_law_residual"].tolist() == pytest.approx([0.0, 0.2 / 1.21], abs=1e-15)
    assert out["w/angular_update"].tolist() == pytest.approx([math.atan(0.1), 0.0], abs=1e-15)


def test_angle_is_exact_at_tiny_angles():
    # ∠((1, 0), (1, 1e-9)) = atan(1e-9); arccos of its cosine, 1 − 5e-19, rounds to 0 in
    # float64. A zero vector has no direction: 0.
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1e-9], [1.0, 0.0]], dtype=torch.float64)
    assert angle(a, b).tolist() == pytest.approx([math.atan(1e-9), 0.0], rel=1e-15, abs=0)


def test_import_path_optimizer_records_what_it_can():
    # torch.optim.SGD has no η the probes can read: no norm law, no effective_lr
    spec = OptimizerSpec(name="torch.optim.SGD", lr=0.1)
    w = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    out = _step(spec, w, torch.tensor([[4.0, -3.0]], dtype=torch.float64))
    assert set(out) == {"w/grad_cosine", "w/angular_update"}
    assert out["w/angular_update"].item() == pytest.approx(math.atan(0.1), abs=1e-15)


def test_effective_lr_is_lr_over_a_power_of_the_norm():
    # ‖w‖ = 5 and 1; η/‖w‖² for a step of degree 1 in g (SGD), η/‖w‖ for degree 0 (Adam)
    class Opt:
        def __init__(self, step_degree):
            self.step_degree = step_degree

        def hyper_for(self, name):
            return {"lr": torch.tensor([1e-2, 2e-2])}

    p = {"w": torch.tensor([[3.0, 4.0], [1.0, 0.0]]), "g": torch.ones(2, 2)}
    for degree, expect in [(1, [1e-2 / 25, 2e-2]), (0, [1e-2 / 5, 2e-2]), (None, None)]:
        obs = Observation(
            step=10, params=p, evaluation=NO_EVAL, optimizer=Opt(degree), scale_invariant=("w",)
        )
        out = effective_lr(obs)
        if expect is None:  # no known degree (an import path): nothing
            assert out == {}
            continue
        assert set(out) == {"w/effective_lr"}  # only the declared tensor
        assert out["w/effective_lr"].tolist() == pytest.approx(expect)


def _toy_grad(w: torch.Tensor) -> torch.Tensor:
    """∇L for L(w) = f(w/‖w‖) per run, f(v) = a·v + ½ v·diag(b)·v with fixed a, b: L(c·w) = L(w)."""
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(w[0].shape, generator=gen, dtype=w.dtype)
    b = torch.randn(w[0].shape, generator=gen, dtype=w.dtype)
    w = w.detach().requires_grad_()
    v = w / w.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    loss = (a * v + 0.5 * b * v * v).sum()
    return torch.autograd.grad(loss, w)[0]


def _obs(params, opt) -> Observation:
    return Observation(
        step=0, params=params, evaluation=NO_EVAL, optimizer=opt, scale_invariant=("w",)
    )


RULES = {  # the registry's rules, with ε = 0 and no decay (both break the exact equivalence)
    "sgd": (dict(name="sgd"), 1),
    "nesterov": (dict(name="sgd", momentum=0.9, nesterov=True), 1),
    "adam": (dict(name="adam"), 0),
    "adamw": (dict(name="adamw"), 0),
    "rmsprop": (dict(name="rmsprop", momentum=0.5), 0),
    "nested_adam": (dict(name="nested_adam"), 0),
    "blockwise_adam": (dict(name="blockwise_adam", blocks="row"), 0),
    "signsgd": (dict(name="signsgd"), 0),
    "signum": (dict(name="signum"), 0),
    "graft sgd|adam": (dict(name="graft", magnitude="sgd", direction="adam"), 1),
    "graft adam|sgd": (dict(name="graft", magnitude="adam", direction="sgd"), 0),
}


@pytest.mark.parametrize("rule", RULES)
def test_effective_lr_turns_unit_norm_weights_as_far(rule):
    """On L(w) = f(w/‖w‖), the run from c·u (‖u‖ = 1) with rate η and the run from u with
    the probe's effective rate, η/c^(k+1) for a rule of step degree k, stay parallel step
    after step (momentum and moments too, since every gradient of the first is 1/c of the
    second's), and record the same effective rate. Harmonic Adam is left out: its step η·a/(η + |a|) is no rate
    times a function of g, so no one rate at unit norm matches it."""
    fields, degree = RULES[rule]
    c, lr = 4.0, 0.05
    u = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    u = u / u.norm()
    scaled = {"w": c * u}
    spec = OptimizerSpec(lr=lr, eps=0.0, weight_decay=0.0, **fields)
    opt = StackedOptimizer([spec], scaled)
    (eff,) = effective_lr(_obs(scaled, opt)).values()
    assert eff.item() == pytest.approx(lr / c ** (degree + 1), rel=1e-15)
    unit = {"w": u.clone()}
    unit_opt = StackedOptimizer([spec.model_copy(update={"lr": eff.item()})], unit)
    for _ in range(3):
        opt.step([_toy_grad(scaled["w"])])
        unit_opt.step([_toy_grad(unit["w"])])
        assert angle(scaled["w"].flatten(1), unit["w"].flatten(1)).item() < 1e-13
    assert angle(u.flatten(1), unit["w"].flatten(1)).item() > 1e-3  # they did turn
    after = effective_lr(_obs(scaled, opt))["w/effective_lr"]
    assert after.item() == pytest.approx(
        effective_lr(_obs(unit, unit_opt))["w/effective_lr"].item()
    )


def _train(tmp_path, optimizer: dict, lrs=(0.1, 0.3), steps=3):
    """Two runs (one per η) of the digits MLP with BatchNorm, in float64, recording the
    invariance, effective_lr and params probes at every step: each run's metrics."""
    specs = [
        RunSpec.model_validate(
            {
                "task": {"name": "digits"},
                "model": {
                    "name": "mlp",
                    # ε = 1e-300 (torch refuses 0) is lost against any variance in float64, so
                    # the loss is scale-invariant to rounding (at 1e-5, cos(w, g) ~ 1e-5)
                    "kwargs": {
                        "normalization": "batchnorm",
                        "depth": 2,
                        "width": 16,
                        "eps": 1e-300,
                    },
                },
                "optimizer": {"name": "sgd", "weight_decay": 0.0, "lr": lr, **optimizer},
                "train": {"steps": steps, "eval_every": 1, "dtype": "float64"},
                "probes": {"record": ["invariance", "effective_lr", "params"]},
            }
        )
        for lr in lrs
    ]
    store = Store(tmp_path / "s.db")
    train_group(specs, store)
    m = store.metrics([s.run_id for s in specs])
    return [m[m["run_id"] == s.run_id].set_index(["name", "step"])["value"] for s in specs]


def test_plain_sgd_follows_the_norm_law(tmp_path):
    """‖w_{k+1}‖² = ‖w_k‖² + η²‖g_k‖² since w_k ⊥ g_k, so cos∠(w_k, w_{k+1}) = ‖w_k‖/‖w_{k+1}‖
    (from the params probe's L2 norms, stored in float32: 1e-4), and effective_lr = η/‖w‖²."""
    for lr, m in zip((0.1, 0.3), _train(tmp_path, {}), strict=True):
        names = {n for n, _ in m.index if n.endswith(("/grad_cosine", "/norm_law_residual"))}
        assert names == {
            f"{t}/{q}" for t in INVARIANT for q in ("grad_cosine", "norm_law_residual")
        }
        for t in INVARIANT:
            for k in (1, 2, 3):
                assert abs(m[f"{t}/grad_cosine", k]) < 1e-12
                assert abs(m[f"{t}/norm_law_residual", k]) < 1e-12
                turn = math.acos(m[f"{t}/l2", k - 1] / m[f"{t}/l2", k])
                assert m[f"{t}/angular_update", k] == pytest.approx(turn, rel=1e-4)
                assert m[f"{t}/effective_lr", k] == pytest.approx(lr / m[f"{t}/l2", k] ** 2)


def test_weight_decay_breaks_the_norm_law_by_its_factor(tmp_path):
    """Coupled decay: w' = (1 − ηλ)w − ηg with w ⊥ g, so the residual is
    ((1 − ηλ)² − 1)·‖w‖²/‖w'‖², −0.0199·(‖w‖/‖w'‖)² at η = 0.1, λ = 0.1."""
    (m,) = _train(tmp_path, {"weight_decay": 0.1}, lrs=(0.1,))
    for t in INVARIANT:
        for k in (1, 2, 3):
            shrink = (1 - 0.1 * 0.1) ** 2 - 1
            expect = shrink * (m[f"{t}/l2", k - 1] / m[f"{t}/l2", k]) ** 2
            assert m[f"{t}/norm_law_residual", k] == pytest.approx(expect, rel=1e-5)
            assert abs(m[f"{t}/grad_cosine", k]) < 1e-12  # the gradient is still ⊥ w


def test_momentum_breaks_the_norm_law_from_the_second_step(tmp_path):
    """Heavy ball: the first step is plain SGD (the buffer starts at g_1); from the second
    on the buffer carries g_1, which is not ⊥ w_1 = w_0 − ηg_1 (⟨w_1, g_1⟩ = −η‖g_1‖²)."""
    (m,) = _train(tmp_path, {"momentum": 0.9}, lrs=(0.1,))
    for t in INVARIANT:
        assert abs(m[f"{t}/norm_law_residual", 1]) < 1e-12
        for k in (2, 3):
            assert abs(m[f"{t}/norm_law_residual", k]) > 1e-4


def test_adam_effective_lr_is_lr_over_the_norm(tmp_path):
    (m,) = _train(tmp_path, {"name": "adam"}, lrs=(0.01,))
    for t in INVARIANT:
        for k in (0, 1, 2, 3):
            assert m[f"{t}/effective_lr", k] == pytest.approx(0.01 / m[f"{t}/l2", k])
