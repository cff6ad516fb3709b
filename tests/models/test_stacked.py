"""The hand-stacked path equals each module run alone and the torch.func recipe: outputs,
gradients and BatchNorm running statistics, for R = 3 runs from different init seeds."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from optlab.models.nets import cnn, mlp
from optlab.models.stacked import stacked_sequential

RUNS, BATCH = 3, 8
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: on a shared machine, waking a thread pool for each of
    thousands of ops costs more than the ops (this file takes 2–4× longer with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _runs(make, dtype=torch.float64) -> list[nn.Module]:
    """R copies from init seeds 0..R−1, with normalizer gains and biases and BatchNorm
    running statistics moved off their init (1, 0, 0, 1) so that each run's own count."""
    copies = []
    for seed in range(RUNS):
        torch.manual_seed(seed)
        net = make().to(dtype)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.BatchNorm1d | nn.LayerNorm):
                    for t in (m.weight, m.bias):
                        if t is not None:
                            t.add_(0.3 * torch.randn_like(t))
                if isinstance(m, nn.BatchNorm1d) and m.track_running_stats:
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
        copies.append(net)
    return copies


def _state(copies: list[nn.Module]) -> dict[str, torch.Tensor]:
    params, buffers = stack_module_state(copies)  # params are leaves that require grad
    return {**params, **buffers}


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within the dtype's tolerance, relative to each entry and, for entries near zero,
    to the tensor's largest: in float32 a gradient entry that is a sum of cancelling terms
    (BatchNorm's backward subtracts batch means) differs by rounding of the large terms.
    Counts (num_batches_tracked) are equal."""
    if not expected.is_floating_point():
        assert torch.equal(actual, expected)
        return
    tol = TOLERANCE[expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * expected.abs().max().item())


def _grads(
    out: torch.Tensor, probe: torch.Tensor, tensors: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Gradients of Σ out ⊙ probe, a loss with a different weight on every logit."""
    return list(torch.autograd.grad((out * probe).sum(), tensors))


def _check(make, dtype, training, shared=False):
    """The fast path against the torch.func recipe (vmap of functional_call over stacked
    parameters and buffers) and against each module run alone: outputs, parameter
    gradients, and the buffers a training forward leaves."""
    copies = _runs(make, dtype)
    names = [n for n, _ in copies[0].named_parameters()]
    x = torch.rand(1 if shared else RUNS, BATCH, 64, dtype=dtype)
    state = _state(copies)
    fast = stacked_sequential(copies[0])
    assert fast is not None
    out = fast(state, x, training)
    probe = torch.randn(out.shape, dtype=dtype)
    grads = _grads(out, probe, [state[n] for n in names])

    recipe = _state(copies)
    params = {n: recipe[n] for n in names}
    buffers = {n: t for n, t in recipe.items() if n not in params}
    copies[0].train(training)
    call = vmap(
        lambda p, b, xs: functional_call(copies[0], (p, b), (xs,)),
        in_dims=(0, 0, None if shared else 0),
    )
    vout = call(params, buffers, x[0] if shared else x)
    _close(out, vout)
    for g, vg in zip(grads, _grads(vout, probe, list(params.values())), strict=True):
        _close(g, vg)
    for name, buffer in buffers.items():
        _close(state[name], buffer)

    for r, net in enumerate(copies):
        net.train(training)
        alone = net(x[0 if shared else r])
        _close(out[r], alone)
        for g, g_alone in zip(grads, _grads(alone, probe[r], list(net.parameters())), strict=True):
            _close(g[r], g_alone)
        for name, buffer in net.named_buffers():
            _close(state[name][r], buffer)


MLP_CASES = [
    (normalization, activation)
    for normalization in ("none", "batchnorm", "layernorm")
    for activation in ("relu", "gelu", "tanh", "silu")
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("normalization,activation", MLP_CASES)
def test_mlp_equals_the_recipe_and_each_module(normalization, activation, dtype, training):
    _check(
        lambda: mlp(
            (64,), 10, depth=2, width=16, activation=activation, normalization=normalization
        ),
        dtype,
        training,
    )


@pytest.mark.parametrize("training", [True, False])
def test_cnn_equals_the_recipe_and_each_module(training):
    """Conv2d and MaxPool2d stack as grouped convolutions over batch-major channels."""
    _check(lambda: cnn((64,), 10, channels=4, width=16), torch.float64, training)


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp((64,), 10, depth=2, width=16),
        lambda: mlp((64,), 10, depth=2, width=16, normalization="batchnorm"),
        lambda: mlp((64,), 10, depth=2, width=16, normalization="layernorm"),
        lambda: cnn((64,), 10, channels=4, width=16),
    ],
    ids=["mlp", "mlp-batchnorm", "mlp-layernorm", "cnn"],
)
def test_shared_x_equals_x_expanded(make):
    """x (1, B, D) is each run's input: the same outputs and gradients as x expanded to R
    (a first Linear with and without bias, feature- and run-major, and a first conv)."""
    copies = _runs(make)
    names = [n for n, _ in copies[0].named_parameters()]
    x = torch.rand(1, BATCH, 64, dtype=torch.float64)
    results = []
    for xs in (x, x.expand(RUNS, -1, -1)):
        state = _state(copies)
        out = stacked_sequential(copies[0])(state, xs, True)
        probe = torch.ones_like(out).cumsum(-1)
        results.append([out, *_grads(out, probe, [state[n] for n in names])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    _check(make, torch.float64, True, shared=True)


def _batchnorm_net(momentum: float | None) -> nn.Sequential:
    """BatchNorm1d over (B, F) and over (B, C, L): the stacked path's two input ranks."""
    return nn.Sequential(
        nn.Linear(64, 32, bias=False),
        nn.BatchNorm1d(32, momentum=momentum),
        nn.ReLU(),
        nn.Unflatten(1, (4, 8)),
        nn.BatchNorm1d(4, momentum=momentum),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_follow_each_module(momentum):
    """Three training forwards, then each run's running_mean, running_var and
    num_batches_tracked equal its module's own (float64, 1e-12); momentum None is
    PyTorch's cumulative average, 1 / num_batches_tracked."""
    copies = _runs(lambda: _batchnorm_net(momentum))
    state = _state(copies)
    fast = stacked_sequential(copies[0])
    for _ in range(3):
        x = torch.rand(RUNS, BATCH, 64, dtype=torch.float64)
        fast(state, x, True)
        for r, net in enumerate(copies):
            net.train()(x[r])
    for r, net in enumerate(copies):
        for name, buffer in net.named_buffers():
            assert buffer.dtype == state[name].dtype
            torch.testing.assert_close(state[name][r], buffer, rtol=1e-12, atol=1e-12)
    assert state["1.num_batches_tracked"].tolist() == [3] * RUNS


def test_layer_options_and_nesting():
    """Nested Sequentials, bias-free LayerNorm, BatchNorm without affine or running stats,
    Dropout(0), Identity: names as named_parameters() gives them, outputs as each module."""
    make = lambda: nn.Sequential(  # noqa: E731
        nn.Sequential(nn.Linear(64, 16, bias=False), nn.BatchNorm1d(16, affine=False), nn.Tanh()),
        nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16, bias=False), nn.Dropout(0.0)),
        nn.BatchNorm1d(16, track_running_stats=False),
        nn.Identity(),
        nn.Linear(16, 10),
    )
    for training in (True, False):
        _check(make, torch.float64, training)


class Scale(nn.Module):
    def forward(self, x):
        return 2 * x


class MySequential(nn.Sequential):
    def forward(self, x):
        return super().forward(x) + 1


@pytest.mark.parametrize(
    "module",
    [
        nn.Sequential(nn.Linear(4, 4), Scale()),
        nn.Sequential(nn.Sequential(nn.Linear(4, 4), Scale())),
        nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)),
        MySequential(nn.Linear(4, 4)),
        nn.Linear(4, 4),
    ],
    ids=["custom-layer", "nested-custom", "dropout", "sequential-subclass", "not-sequential"],
)
def test_unsupported_modules_give_none(module):
    assert stacked_sequential(module) is None
