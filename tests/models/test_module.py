"""Any nn.Module, stacked: R runs trained by optlab equal R plain loops under torch.optim."""

import pytest
import torch
from torch import nn

from optlab.config import expand, load_experiment
from optlab.engine import run_planned
from optlab.engine.data import Batches
from optlab.engine.train import task_for
from optlab.models.module import FactoryError, ModuleModel, check_factory_arguments
from optlab.store import Store

STEPS, LR, BETAS, EPS, WD = 200, 3e-3, (0.9, 0.99), 1e-8, 0.05


class Residual(nn.Module):
    """Not a Sequential: optlab stacks it with vmap of functional_call."""

    def __init__(self, input_shape, classes, width=16):
        super().__init__()
        self.inp = nn.Linear(input_shape[0], width)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, classes)

    def forward(self, x):
        h = self.inp(x)
        return self.out(torch.tanh(self.norm(h)) + h)


def sequential(input_shape, classes, width=16):
    """A Sequential of common layers: optlab's hand-stacked path."""
    return nn.Sequential(
        nn.Linear(input_shape[0], width), nn.LayerNorm(width), nn.Tanh(), nn.Linear(width, classes)
    )


def _plan(factory: str, dtype: str, seeds=(0, 1, 2, 3)):
    spec = load_experiment(
        {
            "name": "m",
            "base": {
                "task": {"name": "digits"},
                "model": {"name": factory},
                "train": {"steps": STEPS, "batch_size": 32, "eval_every": STEPS, "dtype": dtype},
                "optimizer": {
                    "name": "adamw",
                    "lr": LR,
                    "betas": list(BETAS),
                    "eps": EPS,
                    "weight_decay": WD,
                },
                "probes": {"record": ["snapshots"]},
            },
            "seeds": list(seeds),
        }
    )
    return expand(spec)


def _plain_loop(make, seed: int, dtype: torch.dtype, planned) -> dict[str, torch.Tensor]:
    """One run as a user would write it: the module, torch.optim.AdamW, optlab's batches."""
    task = task_for(planned.spec)
    torch.manual_seed(seed)
    net = make((64,), 10).to(dtype)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    batches = Batches(task, "dataset", 32, [seed], torch.device("cpu"), dtype)
    for t in range(STEPS):
        x, y = batches(t)
        loss = nn.functional.cross_entropy(net(x[0]), y[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in net.named_parameters()}


@pytest.mark.parametrize("make", [Residual, sequential], ids=["vmap", "sequential"])
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_a_stack_of_four_runs_ends_where_four_plain_adamw_loops_end(tmp_path, make, dtype, rtol):
    name = f"{__name__}:{make.__name__}"
    planned = _plan(name, str(dtype).removeprefix("torch."))
    store = Store(tmp_path / "s.db")
    run_planned(planned, store)  # one group: the four seeds train as one stack
    for p in planned:
        plain = _plain_loop(make, p.spec.train.seed, dtype, p)
        for tensor, want in plain.items():
            got = store.array(p.run_id, f"snapshot/{tensor}")[STEPS]
            scale = want.abs().max()
            assert torch.allclose(torch.from_numpy(got).to(dtype), want, rtol=0, atol=rtol * scale)


def test_each_run_is_initialised_from_its_own_training_seed():
    model = ModuleModel(f"{__name__}:Residual", {}, torch.zeros(1, 64), 10)
    a, b = (model.init(torch.Generator().manual_seed(s)) for s in (3, 4))
    torch.manual_seed(3)
    want = Residual((64,), 10)
    assert torch.equal(a["inp.weight"], want.inp.weight)
    assert not torch.equal(a["inp.weight"], b["inp.weight"])


def test_batchnorm_buffers_are_per_run_and_follow_each_runs_batches():
    """Two runs of a BatchNorm MLP in one stack: each run's running mean equals that of its
    own module fed its own batches (dataset mode reshuffles per run)."""
    model = ModuleModel(
        "mlp", {"depth": 1, "width": 8, "normalization": "batchnorm"}, torch.zeros(1, 4), 3
    )
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    params = {k: torch.stack([model.init(g)[k] for g in gens]) for k in model.init(gens[0])}
    buffers = {k: torch.stack([model.init_buffers(g)[k] for g in gens]) for k in model.buffer_names}
    x = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(9))
    model.forward({**params, **buffers}, x)  # autograd on: training mode
    for r, seed in enumerate((0, 1)):
        torch.manual_seed(seed)
        from optlab.models.nets import mlp

        net = mlp((4,), 3, depth=1, width=8, normalization="batchnorm").train()
        net(x[r])
        for name, buf in net.named_buffers():
            assert torch.allclose(buffers[name][r].to(buf.dtype), buf, atol=1e-6), name


def test_factory_errors_are_one_line():
    with pytest.raises(FactoryError, match="cannot import 'no_such_pkg.nets'"):
        check_factory_arguments("no_such_pkg.nets:make", {})
    with pytest.raises(FactoryError, match="has no 'nope'"):
        check_factory_arguments(f"{__name__}:nope", {})
    with pytest.raises(FactoryError, match="takes width"):
        check_factory_arguments(f"{__name__}:sequential", {"depth": 3})
    with pytest.raises(FactoryError, match="set by optlab from the task"):
        check_factory_arguments(f"{__name__}:sequential", {"classes": 3})
    with pytest.raises(FactoryError, match="failed to build: ValueError"):
        ModuleModel("mlp", {"normalization": "groupnorm"}, torch.zeros(1, 4), 3)
