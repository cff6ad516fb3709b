"""optlab.optim.AdamW, Adam, SGD and RMSprop take every option of their torch.optim
counterparts and give torch's numbers with each (float64, 20 steps, 1e-9 relative)."""

import inspect

import pytest
import torch

from optlab import optim
from optlab.optim import rules

STEPS = 20
F64 = dict(dtype=torch.float64)
BASE = {  # a step that moves the weights visibly in 20 steps
    "AdamW": dict(lr=1e-2, weight_decay=0.1),
    "Adam": dict(lr=1e-2),
    "SGD": dict(lr=0.1),
    "RMSprop": dict(lr=1e-2),
}


def _net():
    """A 4-8-1 tanh network as three float64 leaves, the same every call."""
    g = torch.Generator().manual_seed(0)
    shapes = ((4, 8), (8,), (8, 1))
    return [torch.randn(s, generator=g, **F64).requires_grad_() for s in shapes]


def _loss(params, x, y):
    w1, b1, w2 = params
    return (((x @ w1 + b1).tanh() @ w2 - y) ** 2).mean()


def _train(cls, kwargs, groups=None, steps=STEPS):
    """``steps`` steps on fresh batches of a fixed stream; ``groups`` gives the bias its own
    param group with those settings."""
    params = _net()
    w1, b1, w2 = params
    groups_or_params = (
        params if groups is None else [{"params": [w1, w2]}, {"params": [b1], **groups}]
    )
    opt = cls(groups_or_params, **kwargs)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 4, generator=g, **F64), torch.randn(16, 1, generator=g, **F64)
        opt.zero_grad()
        _loss(params, x, y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in params])


def _lr(value):
    return torch.tensor(value, **F64)


# (class, option(s), torch's own arguments where they differ: capturable needs a GPU in torch)
OPTIONS = [
    ("AdamW", {}, None),
    ("AdamW", dict(amsgrad=True), None),
    ("AdamW", dict(maximize=True), None),
    ("AdamW", dict(weight_decay=0.5), None),
    ("AdamW", dict(lr=_lr(1e-2)), None),
    ("AdamW", dict(betas=(_lr(0.8), _lr(0.95))), None),
    ("AdamW", dict(foreach=True), None),
    ("AdamW", dict(fused=True), None),
    ("AdamW", dict(capturable=True), {}),
    ("Adam", dict(amsgrad=True, weight_decay=0.1), None),
    ("Adam", dict(maximize=True), None),
    ("Adam", dict(weight_decay=0.1), None),
    ("Adam", dict(decoupled_weight_decay=True, weight_decay=0.1), None),
    ("Adam", dict(lr=_lr(1e-2)), None),
    ("Adam", dict(foreach=True), None),
    ("Adam", dict(fused=True), None),
    ("Adam", dict(capturable=True), {}),
    ("SGD", dict(momentum=0.9), None),
    ("SGD", dict(momentum=0.9, dampening=0.5), None),
    ("SGD", dict(dampening=0.5), None),  # no momentum: torch ignores dampening
    ("SGD", dict(momentum=0.9, nesterov=True), None),
    ("SGD", dict(momentum=0.9, maximize=True), None),
    ("SGD", dict(weight_decay=0.1), None),
    ("SGD", dict(weight_decay=_lr(0.1), momentum=0.5), None),
    ("SGD", dict(lr=_lr(0.1)), None),
    ("SGD", dict(foreach=True, momentum=0.9), None),
    ("SGD", dict(fused=True, momentum=0.9), None),
    ("RMSprop", dict(alpha=0.9), None),
    ("RMSprop", dict(momentum=0.9), None),
    ("RMSprop", dict(centered=True), None),
    ("RMSprop", dict(maximize=True, momentum=0.5), None),
    ("RMSprop", dict(weight_decay=0.1), None),
    ("RMSprop", dict(lr=_lr(1e-2)), None),
    ("RMSprop", dict(foreach=True), None),
    ("RMSprop", dict(capturable=True), {}),
]


@pytest.mark.parametrize(
    "name,options,theirs", OPTIONS, ids=[f"{n}-{'-'.join(o) or 'defaults'}" for n, o, _ in OPTIONS]
)
def test_each_option_gives_torchs_numbers(name, options, theirs):
    kwargs = {**BASE[name], **options}
    ours = _train(getattr(optim, name), kwargs)
    expected = _train(
        getattr(torch.optim, name), {**BASE[name], **(options if theirs is None else theirs)}
    )
    assert torch.allclose(ours, expected, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(ours, _train(getattr(optim, name), kwargs, steps=1), atol=1e-3)


@pytest.mark.parametrize(
    "name,group",
    [
        ("AdamW", dict(lr=0.05, weight_decay=0.0, amsgrad=True)),
        ("SGD", dict(momentum=0.0, lr=0.01)),
    ],
)
def test_param_groups_keep_their_own_options(name, group):
    kwargs = {**BASE[name], "momentum": 0.9} if name == "SGD" else BASE[name]
    ours = _train(getattr(optim, name), kwargs, groups=group)
    assert torch.allclose(
        ours, _train(getattr(torch.optim, name), kwargs, groups=group), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("name", list(BASE))
def test_every_torch_option_is_taken_with_torchs_default_and_kind(name):
    """Positional order too: torch.optim.AdamW(p, 1e-3, (0.9, 0.999), 1e-8, 0.01, True) is amsgrad."""
    ours = inspect.signature(getattr(optim, name)).parameters
    for k, p in inspect.signature(getattr(torch.optim, name)).parameters.items():
        assert k in ours, f"{name} lacks {k}"
        assert (ours[k].kind, ours[k].default) == (p.kind, p.default), k
    positional = [k for k, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    assert positional == [k for k, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD]


@pytest.mark.parametrize("name", list(BASE))
def test_an_unknown_option_is_a_type_error_as_in_torch(name):
    for cls in (getattr(optim, name), getattr(torch.optim, name)):
        with pytest.raises(TypeError, match="unexpected keyword argument 'amsgrd'"):
            cls(_net(), amsgrd=True)


def test_bad_values_name_the_option_and_what_is_allowed():
    with pytest.raises(ValueError, match="lr: .* a number or a 1-element tensor"):
        optim.AdamW(_net(), lr=torch.tensor([1e-3, 1e-2]))
    with pytest.raises(
        ValueError, match="nesterov: True is not allowed: needs momentum > 0 and dampening 0"
    ):
        optim.SGD(_net(), momentum=0.9, dampening=0.1, nesterov=True)


@pytest.fixture
def float64_default():
    """torch's differentiable step counts t in the default dtype: float64 keeps 1e-9."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize(
    "name,kwargs,steps",
    [
        ("AdamW", dict(lr=0.1), 3),
        ("AdamW", dict(lr=0.1, amsgrad=True), 1),  # torch's amsgrad graph breaks after one
        ("Adam", dict(lr=0.1, weight_decay=0.1), 3),
        ("SGD", dict(lr=0.1, weight_decay=0.1), 3),  # torch detaches a new momentum buffer
        ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5), 1),
    ],
)
def test_differentiable_steps_carry_torchs_gradients(float64_default, name, kwargs, steps):
    """The weights after ``steps`` differentiable steps, and their gradients with respect to
    the starting weights and every gradient fed in, equal torch's."""

    def run(cls):
        g = torch.Generator().manual_seed(0)
        w0 = torch.randn(6, generator=g, requires_grad=True)
        grads = [torch.randn(6, generator=g, requires_grad=True) for _ in range(steps)]
        w = w0.clone()  # not a leaf: the step stays in its graph
        opt = cls([w], differentiable=True, **kwargs)
        for grad in grads:
            w.grad = grad
            opt.step()
        return [w.detach(), *torch.autograd.grad(w.pow(2).sum(), [w0, *grads])]

    for a, b in zip(run(getattr(optim, name)), run(getattr(torch.optim, name)), strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("AdamW", dict(amsgrad=True)),
        ("Adam", dict(decoupled_weight_decay=True, weight_decay=0.1)),
        ("RMSprop", dict(momentum=0.5, centered=True)),
    ],
)
def test_a_torch_checkpoint_resumes_in_optlab_and_back(name, kwargs):
    """10 steps in one, a state_dict, 10 more in the other: the same weights as 20 in torch."""
    kwargs = {**BASE[name], **kwargs}
    expected = _train(getattr(torch.optim, name), kwargs)
    for first, second in ((torch.optim, optim), (optim, torch.optim)):
        params = _net()
        opt = getattr(first, name)(params, **kwargs)
        g = torch.Generator().manual_seed(1)
        for step in range(STEPS):
            if step == STEPS // 2:
                state = opt.state_dict()
                opt = getattr(second, name)(params, **kwargs)
                opt.load_state_dict(state)
            x, y = torch.randn(16, 4, generator=g, **F64), torch.randn(16, 1, generator=g, **F64)
            opt.zero_grad()
            _loss(params, x, y).backward()
            opt.step()
        got = torch.cat([p.detach().flatten() for p in params])
        assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_a_state_saved_before_the_torch_options_existed_loads_with_their_defaults():
    """An optlab AdamW state_dict whose groups hold only lr, betas, eps, weight_decay, decay."""
    params = _net()
    opt = optim.AdamW(params)
    state = opt.state_dict()
    old = ("lr", "betas", "eps", "weight_decay", "decay", "params")
    state["param_groups"] = [{k: g[k] for k in old} for g in state["param_groups"]]
    opt.load_state_dict(state)
    assert opt.param_groups[0]["maximize"] is False and opt.param_groups[0]["amsgrad"] is False
    _loss(params, torch.ones(1, 4, **F64), torch.zeros(1, 1, **F64)).backward()
    opt.step()


@pytest.mark.parametrize(
    "rule,init,hyper",
    [
        (rules.adam, rules.adam_init, dict(beta1=0.9, beta2=0.99, eps=1e-8, amsgrad=True)),
        (rules.sgd, rules.momentum_init, dict(momentum=[0.0, 0.5, 0.9], dampening=[0.0, 0.3, 0.7])),
    ],
)
def test_amsgrad_and_dampening_stay_per_run_in_a_stack(rule, init, hyper):
    """Three runs in one call, numbers as (3,) tensors, equal three calls of one run each."""
    hyper = {"lr": [1e-3, 1e-2, 3e-2], "weight_decay": [0.0, 0.1, 1.0], **hyper}
    options = {k: v for k, v in hyper.items() if not isinstance(v, list)}
    numbers = {k: v for k, v in hyper.items() if isinstance(v, list)}
    stacked = {k: torch.tensor(v, **F64) for k, v in numbers.items()}
    kw = {"amsgrad": True} if "amsgrad" in options else {}
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(3, 4, 2, generator=gen, **F64)
    state = init(p, **kw)
    singles = [(p[r : r + 1].clone(), init(p[r : r + 1], **kw)) for r in range(3)]
    for t in range(1, 11):
        grad = torch.randn(3, 4, 2, generator=gen, **F64)
        p, state = rule(p, grad, state, t, **options, **stacked)
        singles = [
            rule(q, grad[r : r + 1], s, t, **options, **{k: v[r] for k, v in numbers.items()})
            for r, (q, s) in enumerate(singles)
        ]
    assert torch.allclose(p, torch.cat([q for q, _ in singles]), rtol=1e-12, atol=0)
