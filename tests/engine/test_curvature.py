"""K-FAC in the engine: the taped statistics, the step they make, and what is refused."""

import pytest
import torch
from torch import nn

from optlab.config import OptimizerSpec, RunSpec, make_optimizer
from optlab.engine.curvature import CurvatureStep
from optlab.engine.data import Batches
from optlab.engine.optimizer import StackedOptimizer
from optlab.engine.train import build_stack, check_buildable
from optlab.errors import SpecError
from optlab.optim.kfac import damped_inverses

KWARGS = {"depth": 1, "width": 8}


def _spec(seed: int = 0, **optimizer) -> RunSpec:
    return RunSpec.model_validate(
        {
            "task": {"name": "digits"},
            "model": {"name": "mlp", "kwargs": KWARGS},
            "optimizer": {"name": "kfac", "lr": 0.05, "weight_decay": 0.0, **optimizer},
            "train": {"steps": 5, "batch_size": 16, "dtype": "float64", "seed": seed},
        }
    )


def _train(specs, steps: int):
    """The stack after ``steps`` K-FAC steps, as the engine takes them, and the first batch
    (Batches draws its epochs in order: it is asked for each step once)."""
    stack = build_stack(specs, torch.device("cpu"))
    seeds = [s.train.seed for s in specs]
    sizes = specs[0].train.batch_sizes
    optimizer = StackedOptimizer([s.optimizer for s in specs], stack.params, 5, seeds, sizes)
    batches = Batches(stack.task, "dataset", sizes, seeds, torch.device("cpu"), stack.dtype)
    step = CurvatureStep(specs[0].optimizer.curvature, seeds)
    first = batches(0)
    for t in range(steps):
        x, y = batches(t) if t else first
        _, grads, layers = step(stack, x, y)
        optimizer.fold_curvature(layers)
        optimizer.step(grads)
    return stack, first


pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_engine_step_is_the_kfac_step_of_a_plain_module():
    """The empirical curvature's factors from a plain nn.Module with hooks (N × the output
    gradients of the mean loss, the bias as a column of ones) give the engine's step."""
    spec = _spec(curvature="empirical", damping=1e-2)
    start = build_stack([spec], torch.device("cpu"))
    stack, (x, y) = _train([spec], 1)
    module = start.model.base.double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(start.params[name][0])
    seen = []

    def keep(layer, inputs, output):
        output.retain_grad()
        seen.append((inputs[0], output))

    hooks = [m.register_forward_hook(keep) for m in module if isinstance(m, nn.Linear)]
    nn.functional.cross_entropy(module(x[0]), y[0]).backward()
    for hook in hooks:
        hook.remove()
    n = x.shape[1]
    for (a, out), layer in zip(seen, [m for m in module if isinstance(m, nn.Linear)], strict=True):
        a_bar = torch.cat([a, torch.ones(n, 1, dtype=a.dtype)], 1)
        g = n * out.grad
        A, G = (a_bar.T @ a_bar / n)[None], (g.T @ g / n)[None]
        a_inv, g_inv = damped_inverses(A, G, 1e-2)
        grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)
        want = torch.cat([layer.weight, layer.bias[:, None]], 1) - 0.05 * g_inv[0] @ grad @ a_inv[0]
        prefix = next(k for k, m in module.named_children() if m is layer)
        got = torch.cat(
            [stack.params[f"{prefix}.weight"][0], stack.params[f"{prefix}.bias"][0][:, None]], 1
        )
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)


def test_runs_in_a_stack_step_as_they_would_alone():
    specs = [_spec(seed=s, damping=d) for s, d in ((0, 1e-2), (1, 1e-3))]
    together, _ = _train(specs, 5)
    for r, spec in enumerate(specs):
        alone, _ = _train([spec], 5)
        for name, p in alone.params.items():
            torch.testing.assert_close(together.params[name][r], p[0], rtol=1e-12, atol=1e-14)


def test_kfac_needs_linear_layers_and_its_fields_are_its_own():
    spec = RunSpec.model_validate(
        {"model": {"name": "centers", "hidden_dim": 8}, "optimizer": {"name": "kfac"}}
    )
    with pytest.raises(ValueError, match="kfac needs an nn.Sequential of Linear layers"):
        check_buildable([spec])
    with pytest.raises(ValueError, match="only kfac reads it"):
        OptimizerSpec(name="adamw", damping=0.1)
    with pytest.raises(ValueError, match="kfac's option"):
        OptimizerSpec(name="adamw", decay="coupled")
    with pytest.raises(SpecError, match="only optlab's engine records"):
        make_optimizer([nn.Parameter(torch.zeros(2))], "kfac")
