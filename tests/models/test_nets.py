"""The MLP and CNN factories: shapes, bias-free Linears before normalizers, scale
invariance, and stacking by the torch.func recipe."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from optlab.models.nets import cnn, mlp, scale_invariant

DIGITS = (64,)  # one flattened 8×8 image


def _double(module: nn.Module) -> nn.Module:
    return module.to(torch.float64)


@pytest.mark.parametrize("normalization", ["none", "batchnorm", "layernorm"])
def test_mlp_shapes_and_biases(normalization):
    """depth 3 → 3 hidden Linears then a head; a Linear feeding a normalizer has no bias."""
    net = mlp(DIGITS, 10, depth=3, width=32, activation="gelu", normalization=normalization)
    assert net(torch.rand(5, 64)).shape == (5, 10)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (64, 32),
        (32, 32),
        (32, 32),
        (32, 10),
    ]
    normalized = normalization != "none"
    assert [m.bias is None for m in linears] == [normalized] * 3 + [False]
    assert len(scale_invariant(net)) == (3 if normalized else 0)


def test_mlp_depth_zero_is_a_linear_head():
    net = mlp(DIGITS, 10, depth=0)
    assert len(net) == 1 and net[0].in_features == 64 and net[0].out_features == 10


def test_mlp_flattens_an_image_shaped_input():
    net = mlp((1, 8, 8), 10, width=16)
    assert isinstance(net[0], nn.Flatten) and net(torch.rand(5, 1, 8, 8)).shape == (5, 10)


@pytest.mark.parametrize("kwargs,named", [({"depth": -1}, "depth: -1"), ({"width": 0}, "width: 0")])
def test_bad_sizes_name_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=named):
        mlp(DIGITS, 10, **kwargs)


@pytest.mark.parametrize(
    "kwargs,named",
    [
        ({"activation": "softplus"}, "activation: 'softplus'"),
        ({"normalization": "rms"}, "normalization: 'rms'"),
    ],
)
def test_unknown_choice_names_argument_and_allowed(kwargs, named):
    with pytest.raises(ValueError, match=named) as err:
        mlp(DIGITS, 10, **kwargs)
    assert "valid:" in str(err.value) and "\n" not in str(err.value)


def test_cnn_shapes():
    """8×8 → two 2×2 pools → 2c maps of 2×2 = 8c features into the hidden Linear."""
    net = cnn(DIGITS, 10, channels=4, width=24)
    assert net(torch.rand(5, 64)).shape == (5, 10)
    hidden = [m for m in net if isinstance(m, nn.Linear)][0]
    assert hidden.in_features == 2 * 4 * 2 * 2 and hidden.out_features == 24


def test_cnn_rejects_a_non_square_input():
    with pytest.raises(ValueError, match="input_shape"):
        cnn((60,), 10)


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_scale_invariant_weights_are(normalization, activation):
    """Scaling every declared weight by 3 leaves the outputs unchanged in float64, training
    and eval mode. Normalizer eps is set to 1e-300, far below an ulp of any variance here, so
    that invariance holds to rounding, not merely within eps / var. BatchNorm's eval mode uses running statistics, which scale with the
    weight once re-estimated: with momentum None one training pass sets them to that
    batch's own, on the same x."""
    torch.manual_seed(0)
    net = _double(
        mlp(DIGITS, 10, depth=2, width=16, activation=activation, normalization=normalization)
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d | nn.LayerNorm):
            m.eps = 1e-300  # batch_norm refuses 0 in training
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = None
    scaled = copy.deepcopy(net)
    names = scale_invariant(net)
    assert names == ("0.weight", "3.weight")
    with torch.no_grad():
        for name in names:
            scaled.get_parameter(name).mul_(3.0)
    x = torch.rand(32, 64, dtype=torch.float64)
    for mode in (True, False):
        net.train(mode), scaled.train(mode)
        torch.testing.assert_close(scaled(x), net(x), rtol=1e-12, atol=1e-12)


def test_scale_invariant_skips_linears_with_bias_or_not_before_a_normalizer():
    net = nn.Sequential(
        nn.Linear(4, 4),
        nn.LayerNorm(4),
        nn.Linear(4, 4, bias=False),
        nn.ReLU(),
        nn.Sequential(nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4)),
    )
    assert scale_invariant(net) == ("4.0.weight",)


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp(DIGITS, 10, width=16, normalization="batchnorm"),
        lambda: mlp(DIGITS, 10, width=16, activation="silu", normalization="layernorm"),
        lambda: cnn(DIGITS, 10, channels=4, width=16),
    ],
)
def test_vmap_of_functional_call_equals_each_copy(make):
    """Two copies stacked by the torch.func ensembling recipe give each copy's own outputs
    (eval mode, so BatchNorm reads its running statistics and vmap writes nothing)."""
    copies = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        copies.append(_double(make()).eval())
    params, buffers = stack_module_state(copies)
    x = torch.rand(2, 8, 64, dtype=torch.float64)
    call = vmap(lambda p, b, xs: functional_call(copies[0], (p, b), (xs,)), in_dims=(0, 0, 0))
    out = call(params, buffers, x)
    for r, net in enumerate(copies):
        torch.testing.assert_close(out[r], net(x[r]), rtol=0, atol=1e-12)


def test_a_fixed_head_and_no_gains_leave_only_scale_invariant_weights_to_train():
    from optlab.models.module import ModuleModel

    kwargs = {"width": 8, "normalization": "batchnorm", "affine": False, "fixed_head": True}
    model = ModuleModel("mlp", kwargs, torch.zeros(1, 64), 10)
    g = torch.Generator().manual_seed(0)
    assert set(model.init(g)) == set(model.scale_invariant) == {"0.weight", "3.weight"}
    assert {"6.weight", "6.bias"} <= set(model.init_buffers(g))  # stacked per run, not trained


def test_normalizer_options_reach_the_layers_and_running_stats_are_batchnorms():
    net = mlp((64,), 10, width=8, normalization="batchnorm", eps=1e-10, running_stats=False)
    norms = [m for m in net if isinstance(m, nn.BatchNorm1d)]
    assert [(m.eps, m.track_running_stats) for m in norms] == [(1e-10, False)] * 2
    with pytest.raises(ValueError, match="running_stats: False is BatchNorm's"):
        mlp((64,), 10, normalization="layernorm", running_stats=False)


def test_init_scale_scales_the_weights_into_a_normalizer_and_nothing_else():
    torch.manual_seed(0)
    plain = mlp((64,), 10, width=8, normalization="batchnorm")
    torch.manual_seed(0)
    scaled = mlp((64,), 10, width=8, normalization="batchnorm", init_scale=10.0)
    for (name, p), q in zip(plain.named_parameters(), scaled.parameters(), strict=True):
        factor = 10.0 if name in scale_invariant(plain) else 1.0
        torch.testing.assert_close(q, factor * p)
    with pytest.raises(ValueError, match="init_scale"):
        mlp((64,), 10, init_scale=2.0)


def test_a_deep_linear_network_without_biases():
    net = mlp((64,), 10, depth=2, width=8, activation="identity", bias=False)
    assert all(name.endswith("weight") for name, _ in net.named_parameters())
    x = torch.randn(5, 64)
    product = net[4].weight @ net[2].weight @ net[0].weight
    torch.testing.assert_close(net(x), x @ product.T)
