"""The fused AdamW path takes the same steps as the pure rule it stands in for."""

import pytest
import torch

from optlab.config import OptimizerSpec
from optlab.engine.optimizer import StackedOptimizer
from optlab.optim import rules
from optlab.optim.fused import fused_adamw_, kernel_agrees, run_numbers

HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1)
CPU = torch.device("cpu")
REAL_KERNEL = getattr(torch, "_fused_adamw_", None)


@pytest.fixture(autouse=True)
def fresh_check():
    """Each test sees the kernel check made anew, so a kernel patched away does not stay
    decided for the tests after it."""
    kernel_agrees.cache_clear()
    yield
    kernel_agrees.cache_clear()


def _decay_read_as_a_factor(*args, **kw):
    """A kernel whose λ became θ ← θ(1 − λ), without η: a change of meaning, not a crash."""
    return REAL_KERNEL(*args, **{**kw, "weight_decay": kw["weight_decay"] / kw["lr"]})


def _new_signature(*args, **kw):
    raise TypeError("_fused_adamw_() got an unexpected keyword argument 'beta1'")


KERNELS = {
    "gone": None,
    "other meaning": _decay_read_as_a_factor,
    "other signature": _new_signature,
}


def _patch_kernel(monkeypatch, kernel):
    if kernel is None:
        monkeypatch.delattr(torch, "_fused_adamw_")
    else:
        monkeypatch.setattr(torch, "_fused_adamw_", kernel)


def test_this_torch_has_a_kernel_that_agrees_on_the_cpu():
    """torch 2.13's CPU kernel passes the check in every float dtype the engine trains in."""
    assert all(kernel_agrees(d, CPU) for d in (torch.float64, torch.float32, torch.bfloat16))


@pytest.mark.parametrize("kernel", KERNELS.values(), ids=KERNELS)
def test_without_a_kernel_that_agrees_the_step_is_the_pure_rules(monkeypatch, kernel):
    """Missing, changed in meaning, or changed in signature: the check says no, once, and
    ``fused_adamw_`` takes the pure rule's steps exactly (the same operations, so equal bits)."""
    _patch_kernel(monkeypatch, kernel)
    g = torch.Generator().manual_seed(0)
    pure = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    fallback, state, fallback_state = pure.clone(), rules.adam_init(pure), rules.adam_init(pure)
    for t in range(1, 11):
        grad = torch.randn(pure.shape, generator=g, dtype=torch.float64)
        pure, state = rules.adamw(pure, grad, state, t, **HYPER)
        fused_adamw_([fallback], [grad], [fallback_state], torch.tensor(float(t)), **HYPER)
    assert kernel_agrees.cache_info()[:2] == (9, 1)  # checked on the first step, then recalled
    assert not kernel_agrees(torch.float64, CPU)
    assert torch.equal(fallback, pure)
    assert all(torch.equal(fallback_state[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    "dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)]
)  # float32: rounding
def test_fused_adamw_equals_the_pure_rule_over_200_steps(dtype, rtol):
    g = torch.Generator().manual_seed(0)
    pure = torch.randn(3, 5, 4, generator=g, dtype=dtype)
    fused, state = pure.clone(), rules.adam_init(pure)
    fused_state = rules.adam_init(pure)
    for t in range(1, 201):
        grad = torch.randn(pure.shape, generator=g, dtype=dtype) + pure
        pure, state = rules.adamw(pure, grad, state, t, **HYPER)
        fused_adamw_([fused], [grad], [fused_state], torch.tensor(float(t)), **HYPER)
    assert torch.allclose(fused, pure, rtol=rtol, atol=rtol * 0.1)  # |θ| ~ 0.1–1
    assert torch.allclose(fused_state["exp_avg_sq"], state["exp_avg_sq"], rtol=rtol, atol=0)
    assert not torch.allclose(fused, torch.zeros_like(fused))


def test_run_numbers_accepts_only_what_the_fused_kernel_computes():
    grid = {**HYPER, "lr": torch.tensor([0.25, 0.5]), "decay": "l2"}  # exact in float32
    assert run_numbers(grid, 2) == [{**HYPER, "lr": 0.25}, {**HYPER, "lr": 0.5}]
    assert run_numbers({**HYPER, "decay": "none"}, 1)[0]["weight_decay"] == 0.0
    assert run_numbers({**HYPER, "decay": "l1"}, 1) is None
    assert run_numbers({**HYPER, "eps_lr_ratio": 2.0}, 1) is None


def _train(opt, params, steps=50):
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        opt.step([p + torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params.values()])
    return params


@pytest.mark.parametrize("kernel", ["real", "gone"])
def test_the_engine_takes_the_fused_path_with_schedules_and_decay_groups_unchanged(
    monkeypatch, kernel
):
    """With the kernel or, where it is gone, by the fallback inside ``fused_adamw_``."""
    if kernel == "gone":
        _patch_kernel(monkeypatch, None)
    spec = OptimizerSpec(
        lr=3e-2,
        weight_decay=0.1,
        lr_schedule={"kind": "cosine", "warmup": 5},
        decay_groups={"b": 0.0},
    )

    def params():
        g = torch.Generator().manual_seed(0)
        return {
            k: torch.randn(2, *s, generator=g, dtype=torch.float64)
            for k, s in (("w", (4, 3)), ("b", (3,)))
        }

    grid = [spec, spec.model_copy(update={"lr": 1e-3})]
    for specs, calls in (([spec, spec], 2), (grid, 4)):  # w decays, b does not; per run
        fast = StackedOptimizer(specs, params(), 50, [1, 2])
        slow = StackedOptimizer(specs, params(), 50, [1, 2])
        assert fast.fused is not None and len(fast.fused) == calls
        slow.fused = None  # the pure rule
        a, b = _train(fast, fast.params), _train(slow, slow.params)
        for k in a:
            assert torch.allclose(a[k], b[k], rtol=1e-12, atol=1e-14)
    assert StackedOptimizer([spec.model_copy(update={"decay": "l1"})], params(), 50).fused is None


def test_a_gradient_laid_out_transposed_updates_each_entry_by_its_own_gradient():
    """Autograd may return a gradient with other strides than its parameter (the narrow
    head's (Wᵀpᵀ)ᵀ gives W's transposed); the fused kernel reads raw memory, so the step
    must match the pure rule's all the same."""
    g = torch.Generator().manual_seed(1)
    pure = torch.randn(3, 6, 2, generator=g)
    fused, state, fused_state = pure.clone(), rules.adam_init(pure), rules.adam_init(pure)
    for t in range(1, 4):
        grad = torch.randn(3, 2, 6, generator=g).transpose(1, 2)  # (3, 6, 2), not contiguous
        pure, state = rules.adamw(pure, grad, state, t, **HYPER)
        fused_adamw_([fused], [grad], [fused_state], torch.tensor(float(t)), **HYPER)
    assert torch.allclose(fused, pure, rtol=1e-6, atol=1e-7)
