"""The memorize-or-generalize toy: the fits its docstring derives, checked against linear
algebra and against torch's own optimizers on the task's tensors (float64, full batch)."""

import pytest
import torch

from optlab.analysis.solutions import min_norm
from optlab.tasks.mg_toy import make_mg_toy

N = 100


def _data():
    x, y = make_mg_toy(N).tensors("train")
    return x.double(), y.double()


def _train(optimizer, steps: int, **kwargs) -> torch.Tensor:
    """w after ``steps`` full-batch steps of ½·MSE from w = 0."""
    x, y = _data()
    w = torch.zeros(N + 1, dtype=torch.float64, requires_grad=True)
    opt = optimizer([w], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((x @ w - y) ** 2).mean()).backward()
        opt.step()
    return w.detach()


def test_the_min_norm_fit_is_one_over_n_plus_one():
    x, y = _data()
    w = torch.linalg.pinv(x) @ y  # the least-L2-norm solution of x w = y
    m, g = min_norm(N)
    assert torch.allclose(w[:-1], torch.full((N,), m, dtype=torch.float64), atol=1e-12)
    assert w[-1].item() == pytest.approx(g, abs=1e-12)  # 100/101
    assert make_mg_toy(N).summary()["min_norm_solution"] == {"memorizer": m, "generalizer": g}


@pytest.mark.parametrize("momentum,lr", [(0.0, 0.5), (0.9, 0.05)])  # the catalog's cases
def test_gradient_descent_from_zero_stays_in_the_span_and_reaches_it(momentum, lr):
    w = _train(torch.optim.SGD, 500, lr=lr, momentum=momentum)
    assert w[-1].item() == pytest.approx(w[:-1].sum().item(), abs=1e-12)  # Σ w_i = w_{n+1}
    assert w[-1].item() == pytest.approx(N / (N + 1), abs=1e-9)


def test_adam_moves_every_coordinate_alike_to_one_half():
    w = _train(torch.optim.Adam, 1, lr=1e-3)
    assert torch.allclose(w, torch.full((N + 1,), 1e-3, dtype=torch.float64))  # lr on each
    w = _train(torch.optim.AdamW, 2_000, lr=1e-3, weight_decay=1e-2)
    # memorizers and generalizer equal but for ε (1e-8), which by step 2,000 is about a
    # thousandth of the memorizers' gradients (7.5e-7 apart; SGD's part by 0.98); near ½
    assert (w - w[-1]).abs().max().item() < 1e-5
    assert w[-1].item() == pytest.approx(0.5, abs=1e-3)
