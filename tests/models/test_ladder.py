"""The ladder's equations on hand-checkable inputs, and stacking over runs."""

import math

import pytest
import torch
from torch import nn

from optlab.config import ModelSpec
from optlab.models import build_model
from optlab.models.base import thin_matmul
from optlab.stacking import stack_runs
from optlab.tasks.voronoi import make_environment

ENV = make_environment(2, 2, 64, 500, 10, 42, "paper")
X = torch.from_numpy(ENV.points["eval"])[None]
Y = torch.from_numpy(ENV.labels["eval"])


def _model(name, **kw):
    return build_model(ModelSpec(name=name, **kw), ENV)


def _params(model, seeds=(0,)):
    return stack_runs([model.init(torch.Generator().manual_seed(s)) for s in seeds])


def test_exact_is_always_right_with_loss_ln_1_plus_inv_e():
    logits = _model("exact").forward({}, X)
    assert (logits.argmax(-1)[0] == Y).all()
    loss = torch.nn.functional.cross_entropy(logits[0], Y)
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)  # 0.3133


def test_center_labels_with_true_head_is_exact():
    """W = one-hot of the center labels (times a large margin) makes pW pick the exact class."""
    model = _model("center_labels")
    W = torch.nn.functional.one_hot(torch.from_numpy(ENV.center_labels), 2).float()[None] * 10
    assert (model.forward({"W": W}, X).argmax(-1)[0] == Y).all()


def test_abs_relu_equals_offset_scale_and_plus_minus_scales_it():
    """relu(z) + relu(−z) = |z|; with pm = (−1, 1), plus_minus's score is |d − o| too."""
    p = _params(_model("offset_scale"))
    a = _model("offset_scale").forward(p, X)
    assert torch.allclose(_model("abs_relu").forward(p, X), a, atol=1e-6)
    pm = {**p, "plus_minus": torch.tensor([[-1.0, 1.0]])}
    assert torch.allclose(_model("plus_minus").forward(pm, X), a, atol=1e-6)


def test_init_values():
    p = _model("centers").init(torch.Generator().manual_seed(0))
    assert p["centers"].shape == (2048, 2) and 80 < p["centers"].std() < 120  # 100·N(0, 1)
    assert torch.equal(p["plus_minus"], torch.tensor([-0.4, 0.4]))
    assert p["scale"] == 1 and 0 <= p["offset"] < 1
    bound = 1 / math.sqrt(2048)  # PyTorch's default Linear init for the k×C head
    assert p["W"].abs().max() <= bound


RUNGS = (
    "exact",
    "center_labels",
    "learn_offset",
    "offset_scale",
    "abs_relu",
    "plus_minus",
    "centers",
    "generalized",
)


def _original_init(name: str, seed: int, hidden: int = 2048) -> dict:
    """What the original study's module for rung ``name`` draws when constructed after
    ``torch.manual_seed(seed)``, rebuilt here with plain torch in the original's order
    (its constructors, Yu 2022's code); nn.Linear's (out, in) weight read as (in, out)."""
    k, dim, classes = len(ENV.centers), ENV.centers.shape[1], 2
    torch.manual_seed(seed)
    if name == "exact":  # constants only
        return {}
    if name == "center_labels":  # the head
        return {"W": nn.Linear(k, classes, bias=False).weight.detach().T}
    if name == "generalized":  # Linear(D→H, bias), scale = 1, head Linear(H→C)
        layer = nn.Linear(dim, hidden)
        scale = torch.ones(hidden)
        W = nn.Linear(hidden, classes, bias=False).weight.detach().T
        return {
            "weight": layer.weight.detach().T,
            "bias": layer.bias.detach(),
            "scale": scale,
            "W": W,
        }
    p = {}
    if name == "centers":  # learned centers first, then as plus_minus with H in place of k
        p["centers"], k = 100 * torch.randn((hidden, dim)), hidden
    if name in ("plus_minus", "centers"):
        p["plus_minus"] = 0.4 * torch.tensor([-1.0, 1.0])
    if name != "learn_offset":
        p["scale"] = torch.ones(())
    p["offset"] = torch.rand((1,))[0]  # then the offset, then the head
    p["W"] = nn.Linear(k, classes, bias=False).weight.detach().T
    return p


@pytest.mark.parametrize("name", RUNGS)
@pytest.mark.parametrize("seed", [0, 42, 1234])
def test_init_draws_what_the_original_modules_drew(name, seed):
    """Seed s gives bitwise the original's initial parameters for seed s: the same
    distributions (nn.Linear's own init, not 2·rand − 1), shapes and order of draws."""
    ours = _model(name).init(torch.Generator().manual_seed(seed))
    want = _original_init(name, seed)
    assert ours.keys() == want.keys()
    for key, value in want.items():
        assert ours[key].shape == value.shape and torch.equal(ours[key], value), key


def test_plus_minus_offset_at_seed_42_is_the_original_runs():
    offset = _model("plus_minus").init(torch.Generator().manual_seed(42))["offset"]
    assert round(offset.item(), 4) == 0.8823  # torch.manual_seed(42); torch.rand(1)


def test_stacked_forward_equals_each_run_alone():
    for name in ("learn_offset", "plus_minus", "centers", "generalized", "final"):
        model = _model(name)
        stacked = _params(model, seeds=(0, 1, 2))
        out = model.forward(stacked, X)
        for r in range(3):
            alone = model.forward({k: v[r : r + 1] for k, v in stacked.items()}, X)
            assert torch.allclose(out[r : r + 1], alone, atol=1e-6), name


def test_generalized_with_abs_activation():
    model = _model("generalized", activation="abs", hidden_dim=4)
    p = _params(model)
    z = (X / 100) @ p["weight"] + p["bias"][:, None]
    expected = torch.softmax(-z.abs(), -1) @ p["W"]  # s = 1 at init
    assert torch.allclose(model.forward(p, X), expected, atol=1e-6)


def test_eval_forward_gives_the_training_forward_up_to_rounding():
    """Without autograd the score is computed in place over fewer buffers, thin products as
    outer products and the head from a contiguous Wᵀ: the training forward's numbers up to
    float32 rounding (the sums' order is BLAS's), and the same predictions off near-ties."""
    names = ("learn_offset", "offset_scale", "abs_relu", "plus_minus", "centers", "generalized")
    for name in names:
        model = _model(name)
        params = _params(model, seeds=(0, 1, 2))
        if "plus_minus" in params:  # signs mixed, as training may leave them
            params["plus_minus"] = torch.tensor([[-0.3, 0.5], [0.2, 0.7], [-0.6, -0.1]])
        params["W"] = params["W"] * 100  # margins as after training: no near-ties
        trained = model.forward({k: v.clone().requires_grad_() for k, v in params.items()}, X)
        with torch.no_grad():
            evaluated = model.forward(params, X)
        torch.testing.assert_close(evaluated, trained.detach(), rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(evaluated.argmax(-1), trained.argmax(-1)), name


def test_thin_matmul_at_eval_is_the_product_as_outer_products():
    """Up to rounding (addcmul may fuse its multiply-add); wide inputs keep the product."""
    x, w = torch.randn(1, 300, 3), torch.randn(4, 3, 50)
    with torch.no_grad():
        torch.testing.assert_close(thin_matmul(x, w), x @ w, rtol=1e-6, atol=1e-6)
        x, w = torch.randn(1, 300, 5), torch.randn(4, 5, 50)
        assert torch.equal(thin_matmul(x, w), x @ w)
