"""Per-example gradients over a stack equal single-example backward passes, run by run: the
digits MLP and CNN, the character transformer, the ladder's centers and the final model."""

import pytest
import torch

from optlab.config import RunSpec
from optlab.engine.per_sample import per_sample_grads
from optlab.engine.train import build_stack, stack_losses


def _stack(model: str = "mlp", task: dict | None = None, **kwargs):
    """Two runs (seeds 42 and 2) of ``model`` on ``task`` (digits), float32 on the CPU."""
    fields = {"name": model, "kwargs": kwargs} if kwargs else {"name": model}
    spec = RunSpec.model_validate({"task": task or {"name": "digits"}, "model": fields})
    return build_stack([spec, spec.with_train(seed=2)], torch.device("cpu"))


def _looped(stack, x, y, loss="cross_entropy"):
    """One backward pass per run and example: the definition per_sample_grads vectorizes."""
    runs, batch = 2, x.shape[1]
    out = {k: torch.empty(runs, batch, *p.shape[1:]) for k, p in stack.params.items()}
    for r in range(runs):
        one = {k: p.detach()[r : r + 1].requires_grad_() for k, p in stack.params.items()}
        for b in range(batch):
            xb = x[:, b : b + 1] if x.shape[0] == 1 else x[r : r + 1, b : b + 1]
            yb = y[:, b : b + 1] if y.shape[0] == 1 else y[r : r + 1, b : b + 1]
            value = stack_losses(stack.model, one, xb, yb, loss)[0]
            for k, g in zip(one, torch.autograd.grad(value, list(one.values())), strict=True):
                out[k][r, b] = g[0]
    return out


@pytest.mark.parametrize("chunk", [7, 3])  # one chunk, and three of uneven size
@pytest.mark.parametrize("shared", [True, False])  # one batch for both runs, or one each
def test_per_sample_grads_equal_single_example_backward(chunk, shared):
    stack = _stack(depth=1, width=16)
    x, y = stack.task.tensors("train")
    if shared:
        x, y = x[None, :7], y[None, :7]
    else:
        x, y = torch.stack([x[:7], x[7:14]]), torch.stack([y[:7], y[7:14]])
    got = per_sample_grads(stack.model, stack.state, x, y, stack.task.loss, chunk)
    want = _looped(stack, x, y)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].shape == (2, 7, *stack.params[k].shape[1:])
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6)
    # the two runs differ (their own seeds), so no run's gradients stood in for the other's
    assert not torch.allclose(got["0.weight"][0], got["0.weight"][1])


def test_per_sample_grads_refuse_batchnorm():
    stack = _stack(depth=1, width=16, normalization="batchnorm")
    x, y = stack.task.tensors("train")
    with pytest.raises(ValueError, match="BatchNorm"):
        per_sample_grads(stack.model, stack.state, x[None, :4], y[None, :4])


def test_per_sample_grads_of_half_mse_equal_single_example_backward():
    stack = _stack(depth=1, width=16)
    x = stack.task.tensors("train")[0][None, :5]
    y = torch.randn(1, 5, 10, generator=torch.Generator().manual_seed(0))  # regression targets
    got = per_sample_grads(stack.model, stack.state, x, y, "half_mse", chunk=2)
    want = _looped(stack, x, y, "half_mse")
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6)


CHARLM = {"name": "charlm", "block_size": 16, "eval_chars": 4096, "test_chars": 4096}
SMALL_VORONOI = {"n_train": 64, "n_eval": 16, "n_test": 16}


@pytest.mark.parametrize(
    ("model", "task", "kwargs"),
    [
        ("cnn", None, {"channels": 4, "width": 16}),  # Conv2d and MaxPool2d, stacked by hand
        ("char_transformer", CHARLM, {"n_layer": 1, "n_head": 2, "n_embd": 16}),  # vmap path
        ("centers", SMALL_VORONOI, {}),  # the ladder's rung, hand-written
        ("final", SMALL_VORONOI, {}),
    ],
)
def test_per_sample_grads_of_other_workloads_equal_single_example_backward(model, task, kwargs):
    stack = _stack(model, task, **kwargs)
    x, y = stack.task.tensors("train")
    x, y = x[None, :5], y[None, :5]
    got = per_sample_grads(stack.model, stack.state, x, y, stack.task.loss, chunk=2)
    want = _looped(stack, x, y)
    assert got.keys() == want.keys() == stack.params.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6)
