"""bf16 (``train.precision``): the forward's matmuls in bfloat16, everything trained and
stored in float32; native support per device; the numeric path says so; fp32 untouched."""

import pytest
import torch
from torch.utils._pytree import tree_leaves

from optlab.config import ModelSpec, RunSpec, expand, load_experiment
from optlab.engine import precision, run_planned
from optlab.engine.curvature import CurvatureStep
from optlab.engine.optimizer import StackedOptimizer
from optlab.engine.train import build_stack, loss_and_grads, numeric_path, stack_losses
from optlab.models import build_model
from optlab.stacking import stack_runs
from optlab.store import Store
from optlab.tasks.voronoi import make_environment

BF16 = {"train.precision": "bf16", "train.force_precision": True}
# bfloat16 keeps 8 bits of mantissa: a relative rounding of up to 2^-9 per input, which a
# forward of a few matmuls compounds to a few times that, far above float32's 2^-24
BF16_ROUNDING = 2**-9


def _spec(model: str, **train) -> RunSpec:
    tree = {
        "model": {"name": model, "hidden_dim": 32} if model == "final" else {"name": model},
        "train": {"steps": 4, "batch_size": 16, "eval_every": 2, "device": "cpu", **train},
        "task": {"n_eval": 64, "n_test": 64},
    }
    if model == "mlp":
        tree["task"] = {"name": "digits"}
        tree["model"]["kwargs"] = {"width": 32, "normalization": "batchnorm"}
    if model == "char_transformer":
        tree["task"] = {"name": "charlm", "block_size": 16, "eval_chars": 80, "test_chars": 80}
        tree["model"]["kwargs"] = {"n_layer": 1, "n_head": 2, "n_embd": 32}
    return RunSpec.model_validate(tree)


def _batch(stack, n: int = 16):
    x, y = stack.task.tensors("train")
    return x[None, :n], y[None, :n]


def test_the_final_models_bf16_forward_is_the_hand_bf16_computation():
    """Autocast rounds each matmul's float32 inputs to bfloat16 and writes bfloat16; the ops
    after a matmul follow its dtype. Written out by hand with those casts, the final model's
    (folded) forward gives bitwise the same outputs, returned as float32; they differ from
    the float32 forward by a bfloat16-sized amount (measured 2^-8 of its largest output)."""
    env = make_environment(2, 2, 64, 8, 8, 42, "paper")
    model = build_model(ModelSpec(name="final", hidden_dim=32), env)
    p = stack_runs([model.init(torch.Generator().manual_seed(s)) for s in range(2)])
    p = {
        k: v + 0.1 * torch.randn(v.shape, generator=torch.Generator().manual_seed(7))
        for k, v in p.items()
    }
    x = torch.from_numpy(env.points["train"])[None].float()
    bf16 = precision.model_outputs(model, p, x, "bf16")
    fp32 = precision.model_outputs(model, p, x, "fp32")

    def mm(a, b):
        return a.bfloat16() @ b.bfloat16()

    w1 = p["dense1.w1"] * (p["dense1.norm"] / 100.0).unsqueeze(-1)
    w2 = p["dense1.w2"] * p["attention.norm"].unsqueeze(-2)
    w3 = p["dense2.w1"] * p["dense2.norm"].unsqueeze(-1)
    w4 = p["dense2.w2"] * p["final.norm"].unsqueeze(-2)
    h = torch.softmax(mm(torch.relu(mm(x, w1)), w2), dim=-1)
    hand = mm(torch.relu(mm(h, w3)), w4).float()
    assert bf16.dtype == torch.float32 and torch.equal(bf16, hand)
    assert torch.equal(fp32, model.forward(p, x))  # fp32: the model's own forward, untouched
    gap = float((bf16 - fp32).abs().max() / fp32.abs().max())
    assert BF16_ROUNDING / 8 < gap < 8 * BF16_ROUNDING


@pytest.mark.parametrize("model", ["centers", "final", "mlp", "char_transformer"])
def test_a_bf16_step_rounds_like_bfloat16_and_keeps_everything_trained_float32(model):
    """A ladder rung, the final model, an nn.Sequential (hand-stacked, with BatchNorm) and the
    char transformer (vmap): the loss and every gradient are float32, not equal to the fp32
    step's and apart from them by bfloat16's rounding compounded over the forward and
    backward (the gradients by 0.2% to 6% in norm, where float32's own would be 1e-7);
    after the optimizer's step the parameters and its state are float32 too."""
    spec = _spec(model)
    fp32, bf16 = (
        build_stack([s, s.with_train(seed=3)], torch.device("cpu"))
        for s in (spec, _spec(model, precision="bf16", force_precision=True))
    )
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    x, y = _batch(fp32)
    (loss32, grads32), (loss16, grads16) = (
        loss_and_grads(stack_losses, s, x, y, [slice(0, 2)]) for s in (fp32, bf16)
    )
    assert loss16.dtype == torch.float32 and not torch.equal(loss16, loss32)
    assert torch.allclose(loss16, loss32, rtol=8 * BF16_ROUNDING)
    assert all(g.dtype == torch.float32 for g in grads16)
    g16, g32 = (torch.cat([g.flatten() for g in grads]) for grads in (grads16, grads32))
    gap = float((g16 - g32).norm() / g32.norm())
    assert BF16_ROUNDING / 8 < gap < 64 * BF16_ROUNDING  # 0.002 (centers) to 0.06 (mlp)
    optimizer = StackedOptimizer([spec.optimizer] * 2, bf16.params, 4, [0, 3], [16] * 4)
    optimizer.step(grads16)
    assert all(p.dtype == torch.float32 for p in bf16.params.values())
    states = [t for t in tree_leaves(optimizer.state) if torch.is_tensor(t)]
    assert states and all(t.dtype == torch.float32 for t in states if t.is_floating_point())


def test_kfacs_curvature_statistics_stay_float32_in_bf16():
    """K-FAC's taped inputs and output gradients are bfloat16 under autocast; the statistics
    the optimizer folds in are float32, as its state."""
    tree = {
        "name": "k",
        "base": {
            "task": {"name": "digits"},
            "model": {"name": "mlp", "kwargs": {"width": 16}},
            "optimizer": {"name": "kfac"},
            "train": {"device": "cpu", "steps": 2, "precision": "bf16", "force_precision": True},
        },
    }
    (planned,) = expand(load_experiment(tree), {})
    stack = build_stack([planned.spec], torch.device("cpu"))
    x, y = _batch(stack)
    loss, grads, layers = CurvatureStep("fisher", [0])(stack, x, y)
    assert loss.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    assert layers and all(a.dtype == g.dtype == torch.float32 for a, g in layers.values())


def test_native_bf16_is_amx_or_avx512_bf16_or_arms_bf16(monkeypatch):
    """What torch.cpu.get_capabilities reports decides, and the bench and the refusal say
    which feature it found or what the CPU lacks."""
    cpu, name = torch.device("cpu"), precision.cpu_name()
    for capabilities, native, words in (
        (
            {"architecture": "x86_64", "avx2": True, "avx512_f": True},
            False,
            "no AMX, no AVX512-BF16",
        ),
        ({"architecture": "x86_64", "avx512_bf16": True}, True, "native bf16 (avx512_bf16)"),
        (
            {"architecture": "x86_64", "amx_bf16": True, "amx_tile": True},
            True,
            "native bf16 (amx_bf16)",
        ),
        ({"architecture": "aarch64", "bf16": True}, True, "native bf16 (bf16)"),
        ({"architecture": "aarch64"}, False, "no BF16 extension"),
    ):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda c=capabilities: c)
        assert precision.native_bf16(cpu) is native
        assert precision.bf16_support(cpu) == f"{name}: {words}"


def test_bf16_without_native_support_is_refused_unless_forced(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match=r"^train\.precision: 'bf16' has no native support"):
        precision.check_precision(_spec("final", precision="bf16"), cpu)
    precision.check_precision(_spec("final", precision="bf16", force_precision=True), cpu)
    precision.check_precision(_spec("final"), cpu)
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    precision.check_precision(_spec("final", precision="bf16"), cpu)


def test_bf16_is_how_a_run_is_computed_and_its_numeric_path_says_so(tmp_path):
    """The same run id as fp32 (as ``compile``: how, not what), its own numeric path, which
    keeps the analysis from comparing it with fp32 runs."""
    from optlab.analysis.paths import machine_part

    tree = {"name": "t", "base": {"model": {"name": "final", "hidden_dim": 16}}, "seeds": [1]}
    small = {"train.steps": 20, "train.eval_every": 10, "task.n_eval": 100, "task.n_test": 100}
    (fp32,) = expand(load_experiment(tree), small)
    (bf16,) = expand(load_experiment(tree), {**small, **BF16})
    assert bf16.run_id == fp32.run_id
    paths = []
    for p in (fp32, bf16):
        store = Store(tmp_path / f"{p.spec.train.precision}.db")
        (outcome,) = run_planned([p], store)
        assert outcome.diverged_step is None
        paths += store.runs()["numeric_path"].tolist()
    eager = f"torch {torch.__version__}, cpu, float32, "
    assert paths == [
        eager + "eager, subnormals flushed | fused adamw",
        eager + "bf16 autocast, eager, subnormals flushed | fused adamw",
    ]
    assert numeric_path(bf16.spec, torch.device("cpu")) == paths[1]
    assert machine_part(paths[0]) != machine_part(paths[1])
