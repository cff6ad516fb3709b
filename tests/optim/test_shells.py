"""make_optimizer: every rule as a torch.optim.Optimizer built from spec fields."""

import pytest
import torch

from optlab.config import SpecError, make_optimizer


def _train(make, steps=300, seed=3):
    """A quartic-plus-noise objective on a 5×3 weight and a bias (float64)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 3, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, generator=g).requires_grad_()
    opt = make([w, b])
    for _ in range(steps):
        target = torch.randn(5, 3, generator=g, dtype=torch.float64)
        opt.zero_grad()
        loss = ((w + b - target) ** 2).sum() + 0.01 * w.pow(4).sum()
        loss.backward()
        opt.step()
    return torch.cat([w.detach().flatten(), b.detach()])


def test_made_adamw_matches_torch_adamw_with_a_cosine_schedule():
    """The shell's cosine schedule (5 warmup steps over 300) against torch's LambdaLR."""
    from optlab.optim.schedules import cosine

    ours = _train(
        lambda ps: make_optimizer(
            ps,
            "adamw",
            steps=300,
            lr=1e-2,
            weight_decay=0.1,
            lr_schedule={"kind": "cosine", "warmup": 5},
        )
    )

    def theirs(ps):
        opt = torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cosine(k + 1, 300, 5))
        opt.register_step_post_hook(lambda *_: sched.step())
        return opt

    assert torch.allclose(ours, _train(theirs), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "name,fields",
    [
        ("nested_adam", {"bias_correction": "exact"}),
        ("blockwise_adam", {"blocks": "row"}),
        ("harmonic", {}),
        ("signsgd", {"lr": 1e-3}),
        ("signum", {"lr": 1e-3}),
        ("graft", {"magnitude": "sgd", "direction": "adamw", "graft": "global"}),
        ("adamw", {"decay": "dropout", "decay_p": 0.5}),
        ("adamw", {"decay": "sign_ema"}),
        ("adamw", {"decay": "grad_scaled"}),
    ],
)
def test_every_rule_trains_deterministically_and_its_state_round_trips(name, fields):
    """Same seed, same weights; a state_dict loaded into a fresh shell continues identically."""
    fields = {"lr": 1e-2, **fields}
    make = lambda ps: make_optimizer(ps, name, **fields)  # noqa: E731
    a, b = _train(make, steps=50), _train(make, steps=50)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    p = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = make([p])
    for _ in range(3):
        p.grad = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
        opt.step()
    q = p.detach().clone().requires_grad_()
    clone = make([q])
    clone.load_state_dict(opt.state_dict())
    for o, x in ((opt, p), (clone, q)):
        x.grad = torch.tensor([0.3, 0.1, -1.0, 2.0], dtype=torch.float64)
        o.step()
    if "dropout" not in fields.get("decay", ""):  # the generator is not part of the state
        assert torch.equal(p, q)


def test_make_optimizer_rejects_unknown_rules_and_options_naming_the_valid_ones():
    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(SpecError, match="valid: adamw, adam, sgd"):
        make_optimizer(w, "adamz")
    with pytest.raises(SpecError, match="bias_corection: unknown option; valid: name, lr"):
        make_optimizer(w, "nested_adam", bias_corection="exact")
    with pytest.raises(SpecError, match="graft needs magnitude and direction"):
        make_optimizer(w, "graft", magnitude="sgd")
