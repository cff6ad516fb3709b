"""The kfac and jacobian probes (Grosse (2022), CSC 2541 lecture 5, mechanisms 2 and 3): the
damping ratios on factors worked by hand, the Jacobian identity exactly on a deep linear
network, the Gauss-Newton pass against autograd's Jacobians, and both probes through the
engine."""

import math
from itertools import pairwise

import pytest
import torch
from torch import nn

from optlab.config import RunSpec
from optlab.engine.curvature import gauss_newton_pass
from optlab.engine.data import task_tensors
from optlab.engine.optimizer import StackedOptimizer
from optlab.engine.train import build_stack, train_group
from optlab.optim.kfac import jacobian_norm_sq, layer_factors
from optlab.probes.base import Evaluation, Observation
from optlab.probes.kfac import jacobian, kfac
from optlab.store import Store

NO_EVAL = Evaluation(torch.zeros(3), torch.zeros(3), {}, None)
QUANTITIES = ("A_trace", "G_trace", "A_lambda_max", "G_lambda_max")
RATIOS = ("A_damping_ratio", "G_damping_ratio", "damping_ratio")


pytestmark = pytest.mark.usefixtures("one_thread")


class FakeKfac:
    """What the kfac probe reads of the engine's optimizer: per tensor its state and γ."""

    torch_optimizer = None

    def __init__(self, state: dict, damping: torch.Tensor) -> None:
        self.state, self.damping = state, damping

    def hyper_for(self, name: str) -> dict:
        return {"damping": self.damping}


def test_kfac_probe_by_hand():
    # A = diag(4, 1) (run 1 rotated by 45°: [[2.5, 1.5], [1.5, 2.5]], the same eigenvalues),
    # G = diag(1, 0): traces 5 and 1, λ_max 4 and 1, π = √((5/2)/(1/2)) = √5. γ = 0.04 and
    # 0.16 (√γ = 0.2, 0.4): A's ratio π√γ/4 = √5/20 and √5/10, G's (√γ/π)/1 = 0.2/√5 and
    # 0.4/√5, and γ/(4·1) = 0.01 and 0.04, the product of the two. Run 2's factors went
    # non-finite (it diverged): NaN there, and the others are untouched.
    A = torch.tensor([[[4.0, 0.0], [0.0, 1.0]], [[2.5, 1.5], [1.5, 2.5]], [[math.nan, 0], [0, 1]]])
    G = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).expand(3, 2, 2)
    state = {"0.weight": {"A": A, "G": G, "momentum_buffer": torch.zeros(3, 2, 2)}, "0.bias": {}}
    out = kfac(_obs(FakeKfac(state, torch.tensor([0.04, 0.16, 0.04], dtype=torch.float64))))
    assert set(out) == {f"0.weight/{q}" for q in QUANTITIES + RATIOS}
    r5 = math.sqrt(5)
    expect = {
        "A_trace": [5, 5],
        "G_trace": [1, 1],
        "A_lambda_max": [4, 4],
        "G_lambda_max": [1, 1],
        "A_damping_ratio": [r5 / 20, r5 / 10],
        "G_damping_ratio": [0.2 / r5, 0.4 / r5],
        "damping_ratio": [0.01, 0.04],
    }
    for q, values in expect.items():
        assert out[f"0.weight/{q}"].dtype == torch.float64
        assert out[f"0.weight/{q}"][:2].tolist() == pytest.approx(values, rel=1e-12)
    assert out["0.weight/damping_ratio"][2].isnan()


def test_kfac_probe_records_nothing_for_other_optimizers():
    # SGD's state has no factors; before K-FAC's first step neither has K-FAC's; no optimizer
    from optlab.config import OptimizerSpec

    params = {"0.weight": torch.ones(1, 2, 2)}
    for name in ("sgd", "kfac"):
        opt = StackedOptimizer([OptimizerSpec(name=name, lr=0.1)], params)
        assert kfac(_obs(opt)) == {}
    assert kfac(_obs(None)) == {}


def _obs(optimizer, params=None, measured=None) -> Observation:
    return Observation(
        step=1,
        params=params or {},
        evaluation=NO_EVAL,
        optimizer=optimizer,
        gauss_newton=None if measured is None else lambda: measured,
    )


def deep_linear(input_shape: tuple[int, ...], classes: int, width: int = 8) -> nn.Sequential:
    """Three bias-free Linear layers, no activation: f(x) = W₃W₂W₁x."""
    (d,) = input_shape
    sizes = [d, width, width, classes]
    return nn.Sequential(*(nn.Linear(a, b, bias=False) for a, b in pairwise(sizes)))


def _stack(model: dict, seeds=(0, 1)):
    specs = [
        RunSpec.model_validate(
            {
                "task": {"name": "digits"},
                "model": model,
                "train": {"seed": s, "dtype": "float64"},
            }
        )
        for s in seeds
    ]
    return build_stack(specs, torch.device("cpu"))


LINEAR = {"name": "tests.probes.test_kfac:deep_linear"}


def _measure(stack, x):
    measured = gauss_newton_pass(stack, x)
    return jacobian(_obs(None, {k: p.detach() for k, p in stack.params.items()}, measured))


def test_jacobian_identity_is_exact_for_a_linear_network_on_whitened_inputs():
    """θᵀĜθ = (L + 1)‖J‖²_F with L + 1 = 3 weight matrices, E[x xᵀ] = I over the batch (x the
    rows of √N·Q, Q with orthonormal columns), J = W₃W₂W₁ the same at every x."""
    stack = _stack(LINEAR)
    q, _ = torch.linalg.qr(
        torch.randn(256, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    )
    x = math.sqrt(256) * q
    out = _measure(stack, x)
    assert set(out) == {"gn_norm", "jacobian_sq", "jacobian_sq_whitened", "ratio", "ratio_whitened"}
    weights = [stack.params[f"{i}.weight"].detach() for i in range(3)]
    assert out["jacobian_sq"].tolist() == pytest.approx(jacobian_norm_sq(weights).tolist(), 1e-12)
    assert out["jacobian_sq_whitened"].tolist() == pytest.approx(out["jacobian_sq"].tolist(), 1e-12)
    assert out["ratio"].tolist() == pytest.approx([1.0, 1.0], rel=1e-12, abs=0)
    assert out["ratio_whitened"].tolist() == pytest.approx([1.0, 1.0], rel=1e-12, abs=0)
    assert out["gn_norm"][0] != out["gn_norm"][1]  # two runs, two networks


def test_whitened_ratio_is_exact_for_a_linear_network_on_any_inputs():
    """On digits' pixels (not whitened, Σ = E[x xᵀ] ≠ I) each layer's term is tr(J Σ Jᵀ), so
    ratio_whitened is 1 and the plain ratio tr(J Σ Jᵀ)/‖J‖²_F, well below 1 here."""
    stack = _stack(LINEAR)
    x, _ = task_tensors(stack.task, "eval", torch.device("cpu"), torch.float64)
    x = x[:256]
    out = _measure(stack, x)
    J = stack.params["2.weight"] @ stack.params["1.weight"] @ stack.params["0.weight"]
    sigma = x.T @ x / len(x)
    expect = torch.einsum("rcd,de,rce->r", J, sigma, J).detach()
    assert out["jacobian_sq_whitened"].tolist() == pytest.approx(expect.tolist(), rel=1e-12)
    assert out["ratio_whitened"].tolist() == pytest.approx([1.0, 1.0], rel=1e-12, abs=0)
    assert (out["ratio"] < 0.9).all()


def test_gauss_newton_pass_matches_autograd_on_the_nonlinear_mlp():
    """The digits MLP (ReLU, biases): E‖J(x)‖²_F and E tr(J Σ Jᵀ) against torch.autograd's
    Jacobian per example; the head's Ĝ is E[Jᵀ J] of f w.r.t. its own outputs, I (C = 10)."""
    stack = _stack({"name": "mlp", "kwargs": {"depth": 2, "width": 16}}, seeds=(3,))
    x, _ = task_tensors(stack.task, "eval", torch.device("cpu"), torch.float64)
    x = x[:32]
    measured = gauss_newton_pass(stack, x)
    params = {k: p.detach() for k, p in stack.params.items()}
    J = torch.stack(
        [
            torch.autograd.functional.jacobian(
                lambda v: stack.model.forward(params, v[None, None]), xi
            )
            for xi in x
        ]
    ).reshape(32, 10, 64)
    assert measured.jacobian_sq.item() == pytest.approx(J.pow(2).sum((1, 2)).mean().item(), 1e-12)
    sigma = x.T @ x / len(x)
    whitened = torch.einsum("ncd,de,nce->n", J, sigma, J).mean()
    assert measured.jacobian_sq_whitened.item() == pytest.approx(whitened.item(), rel=1e-12)
    assert list(measured.layers) == ["0.", "2.", "4."]
    _, G = layer_factors(*measured.layers["4."])
    assert torch.allclose(G[0], torch.eye(10, dtype=torch.float64), atol=1e-14)


def test_gauss_newton_pass_leaves_batchnorm_statistics_and_tokens_alone():
    stack = _stack(
        {"name": "mlp", "kwargs": {"depth": 1, "width": 8, "normalization": "batchnorm"}}
    )
    before = {k: b.clone() for k, b in stack.buffers.items()}
    x, _ = task_tensors(stack.task, "eval", torch.device("cpu"), torch.float64)
    assert gauss_newton_pass(stack, x[:64]).jacobian_sq.isfinite().all()
    assert all(torch.equal(before[k], b) for k, b in stack.buffers.items())
    assert gauss_newton_pass(stack, torch.zeros(4, 3, dtype=torch.long)) is None


def _train(tmp_path, optimizer: dict, steps=3):
    """Two runs (seeds 0, 1) of the digits MLP recording the kfac and jacobian probes at every
    step: each run's metrics by (split, name, step)."""
    specs = [
        RunSpec.model_validate(
            {
                "task": {"name": "digits"},
                "model": {"name": "mlp", "kwargs": {"depth": 2, "width": 16}},
                "optimizer": {"weight_decay": 0.0, **optimizer},
                "train": {"steps": steps, "eval_every": 1, "batch_size": 64, "seed": seed},
                "probes": {"record": ["kfac", "jacobian"]},
            }
        )
        for seed in (0, 1)
    ]
    store = Store(tmp_path / "s.db")
    train_group(specs, store)
    m = store.metrics([s.run_id for s in specs])
    m = m[m["split"].isin(["kfac", "jacobian"])]
    return [m[m["run_id"] == s.run_id].set_index(["split", "name", "step"])["value"] for s in specs]


def test_kfac_and_jacobian_probes_through_the_engine(tmp_path):
    """K-FAC's three Linear layers get their factors' traces, eigenvalues and damping ratios
    from its first step on, and damping_ratio = A_damping_ratio·G_damping_ratio (the store keeps
    float32); the jacobian probe records finite values at every step from the start."""
    fisher = {"name": "kfac", "lr": 0.01, "momentum": 0.9, "damping": 0.1, "curvature": "fisher"}
    for m in _train(tmp_path, fisher):
        names = {(s, n) for s, n, _ in m.index}
        layers = ("0.weight", "2.weight", "4.weight")
        expected = {("kfac", f"{t}/{q}") for t in layers for q in QUANTITIES + RATIOS}
        expected |= {("jacobian", n) for n in ("gn_norm", "jacobian_sq", "ratio")}
        expected |= {("jacobian", n) for n in ("jacobian_sq_whitened", "ratio_whitened")}
        assert names == expected
        assert sorted({k for s, _, k in m.index if s == "kfac"}) == [1, 2, 3]
        assert sorted({k for s, _, k in m.index if s == "jacobian"}) == [0, 1, 2, 3]
        assert m.notna().all() and (m.abs() < math.inf).all()
        for t in layers:
            for k in (1, 2, 3):
                product = (
                    m["kfac", f"{t}/A_damping_ratio", k] * m["kfac", f"{t}/G_damping_ratio", k]
                )
                assert m["kfac", f"{t}/damping_ratio", k] == pytest.approx(product, rel=1e-5)
        for k in (0, 1, 2, 3):
            assert m["jacobian", "gn_norm", k] > 0 and m["jacobian", "jacobian_sq", k] > 0


def test_other_optimizers_record_the_jacobian_probe_only(tmp_path):
    for m in _train(tmp_path, {"name": "sgd", "lr": 0.05, "momentum": 0.9}):
        assert {s for s, _, _ in m.index} == {"jacobian"}
        assert m.notna().all()
