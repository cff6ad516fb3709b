"""The per-coordinate moments of per-example gradients from one taped backward equal those
of the per-example gradients themselves; a taped forward computes what the plain one does."""

import pytest
import torch

from optlab.config import RunSpec
from optlab.engine.grad_moments import RecordingTape, example_spreads, taped_spreads
from optlab.engine.per_sample import per_sample_grads
from optlab.engine.train import build_stack
from optlab.probes.gradient_stats import Spread

VORONOI = {"n_train": 300, "n_eval": 16, "n_test": 16}


def _trained(spec: RunSpec, steps: int = 30, lr: float = 3e-2):
    """Two runs (seeds 42 and 2) of ``spec``, trained ``steps`` AdamW steps by hand so that
    no parameter sits at its initial value; with 200 training examples."""
    stack = build_stack([spec, spec.with_train(seed=2)], torch.device("cpu"))
    x, y = stack.task.tensors("train")
    opt = torch.optim.AdamW(stack.params.values(), lr=lr)
    for _ in range(steps):
        logits = stack.model.forward(stack.state, x[None, :64])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y[:64].repeat(2)
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    return stack, x[None, :200], y[None, :200]


def _assert_spreads_equal(stack, x, y):
    got = taped_spreads(stack.model, stack.state, x, y, "cross_entropy")
    grads = per_sample_grads(stack.model, stack.state, x, y, "cross_entropy")
    assert got.keys() == grads.keys() == stack.params.keys()
    for name, g in grads.items():
        want = Spread.of(g.double())
        assert got[name].n == want.n == 200
        # float32 rounding of each example's gradient, on the scale of the largest
        size = g.abs().max().double()
        torch.testing.assert_close(got[name].mean, want.mean, rtol=1e-5, atol=1e-6 * size)
        torch.testing.assert_close(got[name].var, want.var, rtol=1e-5, atol=1e-6 * size**2)
    return got


def _final_stack(**model):
    """A small final model, trained (the layernorm weights not all 1)."""
    fields = {"name": "final", "hidden_dim": 24, **model}
    return _trained(RunSpec.model_validate({"task": VORONOI, "model": fields}))


@pytest.mark.parametrize(
    "model",
    [
        {},  # no normalization: the training forward is the folded one
        {"layernorm_normalization": True, "nonlinearity": "swish"},
    ],
)
def test_taped_spreads_equal_those_of_per_example_gradients(model):
    got = _assert_spreads_equal(*_final_stack(**model))
    # the runs differ: neither stood in for the other
    assert not torch.allclose(got["dense2.w1"].var[0], got["dense2.w1"].var[1])


@pytest.mark.parametrize(
    "model",
    [
        {"name": "center_labels"},
        {"name": "learn_offset"},
        {"name": "offset_scale"},
        {"name": "abs_relu"},
        {"name": "plus_minus"},  # its pair enters entry by entry
        {"name": "centers", "hidden_dim": 16},  # the centers enter through c/‖c‖²
        {"name": "generalized", "hidden_dim": 16, "activation": "silu"},
    ],
)
def test_taped_spreads_of_the_ladder_equal_those_of_per_example_gradients(model):
    spec = RunSpec.model_validate({"task": VORONOI, "model": model})
    _assert_spreads_equal(*_trained(spec, steps=20, lr=1e-2))


def test_the_taped_pass_by_slices_of_runs_equals_it_whole(monkeypatch):
    import optlab.engine.grad_moments as module

    stack, x, y = _final_stack()
    whole = taped_spreads(stack.model, stack.state, x, y, "cross_entropy")
    monkeypatch.setattr(module, "PROBE_CHUNK_ELEMENTS", 1)  # one run a slice
    sliced = example_spreads(stack.model, stack.state, x, y, "cross_entropy")
    for name, s in whole.items():
        assert sliced[name].mean.shape == s.mean.shape == (2, stack.params[name][0].numel())
        torch.testing.assert_close(sliced[name].mean, s.mean, rtol=1e-12, atol=0)
        torch.testing.assert_close(sliced[name].var, s.var, rtol=1e-12, atol=0)


def test_example_spreads_take_the_tape_where_the_model_has_one():
    stack, x, y = _final_stack()
    taped = example_spreads(stack.model, stack.state, x, y, "cross_entropy")
    for name, s in taped_spreads(stack.model, stack.state, x, y, "cross_entropy").items():
        assert torch.equal(taped[name].var, s.var)


def test_the_tape_computes_what_the_plain_forward_does_and_keeps_each_product_once():
    stack, x, _ = _final_stack(layernorm_normalization=True)
    tape = RecordingTape()
    with torch.no_grad():
        taped = stack.model.taped_forward(stack.state, x, tape)
        assert torch.equal(taped, stack.model.forward(stack.state, x))
    assert set(tape.linears) == {"dense1.w1", "dense1.w2", "dense2.w1", "dense2.w2"}
    norms = {"dense1.norm", "attention.norm", "dense2.norm", "final.norm"}
    assert set(tape.scales) == {(name, None) for name in norms}
    with pytest.raises(ValueError, match="'dense1.w1' enters twice"):
        tape.linear("dense1.w1", x, x)
    with pytest.raises(ValueError, match="'final.norm' enters twice"):
        tape.scaled("final.norm", x, x, index=0)


def test_of_sums_is_the_unbiased_variance():
    g = torch.tensor([[[1.0, 2.0], [3.0, 2.0], [5.0, 2.0], [7.0, 2.0]]], dtype=torch.float64)
    s = Spread.of_sums(g.sum(1), g.pow(2).sum(1), 4)
    torch.testing.assert_close(s.mean, torch.tensor([[4.0, 2.0]], dtype=torch.float64))
    # (9 + 1 + 1 + 9)/3 and 0, not a rounding below it
    torch.testing.assert_close(s.var, torch.tensor([[20 / 3, 0.0]], dtype=torch.float64))
