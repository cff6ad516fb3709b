"""The character transformer: shapes, causality, nanoGPT's init, and stacking under torch.func."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from optlab.models.transformer import char_transformer, flops_per_step

T, V = 16, 11  # block size and vocabulary of the small model the tests build


def _model(seed=0, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    return char_transformer((T,), V, n_embd=32, **kw).to(dtype)


def _tokens(batch=4, seed=0):
    return torch.randint(0, V, (batch, T), generator=torch.Generator().manual_seed(seed))


def test_output_shape():
    assert _model()(_tokens()).shape == (4, T, V)
    assert _model()(_tokens()[:, :5]).shape == (4, 5, V)  # shorter windows read positions 0..4


def test_changing_token_t_changes_no_logit_before_t():
    model, x = _model(), _tokens()
    for t in (0, 7, T - 1):
        x2 = x.clone()
        x2[:, t] = (x2[:, t] + 1) % V
        a, b = model(x), model(x2)
        torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
        assert (a[:, t] - b[:, t]).abs().max() > 1e-4  # position t itself sees the change


def test_init_as_nanogpt():
    """Weights N(0, 0.02²), residual projections N(0, (0.02/√(2·n_layer))²) = 0.01 at two
    layers, biases 0; 128² draws estimate a std to about 0.6%, so 3% is 5 sd."""
    torch.manual_seed(0)
    model = char_transformer((T,), V, n_layer=2, n_embd=128)
    for name, p in model.named_parameters():
        if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
            assert p.std().item() == pytest.approx(0.01, rel=0.03), name
        elif name.endswith(("qkv.weight", "fc.weight", "tok_emb.weight", "pos_emb.weight")):
            assert p.std().item() == pytest.approx(0.02, rel=0.03), name
        elif name.endswith("bias"):  # Linear biases and LayerNorm shifts
            assert torch.all(p == 0), name
    assert model.lm_head.bias is None


def _stacked_vs_alone(dtype, rtol, atol):
    """Three copies from seeds 0, 1, 2, vmapped over stacked state: logits and the gradients
    of the summed losses equal each copy run alone."""
    models = [_model(seed, dtype) for seed in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x, y = _tokens(seed=1), _tokens(seed=2)

    def call(p, b, xs):
        return functional_call(base, (p, b), (xs,))

    def loss(logits):
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))

    for x_dim, xs in ((None, x), (0, x.expand(3, *x.shape))):
        for p in params.values():
            p.grad = None
        logits = vmap(call, in_dims=(0, 0, x_dim))(params, buffers, xs)
        sum(loss(out) for out in logits).backward()
        for r, model in enumerate(models):
            model.zero_grad()
            alone = model(x)
            loss(alone).backward()
            torch.testing.assert_close(logits[r], alone, rtol=rtol, atol=atol)
            for name, p in model.named_parameters():
                torch.testing.assert_close(params[name].grad[r], p.grad, rtol=rtol, atol=atol)


def test_vmap_over_stacked_copies_equals_each_alone_float32():
    _stacked_vs_alone(torch.float32, rtol=1e-5, atol=1e-6)


def test_vmap_over_stacked_copies_equals_each_alone_float64():
    _stacked_vs_alone(torch.float64, rtol=1e-10, atol=1e-10)


def test_flops_per_step_of_the_default_size():
    """B·T·(6N + 12·L·T·C) with N = 12·L·C² + C·V: 4096 tokens × (6·406 016 + 393 216)."""
    assert flops_per_step(32, 128, 2, 128, 100) == 4096 * (6 * 406_016 + 393_216)
