"""Convergence diagnostics on series whose answer is known."""

import numpy as np
import pytest

from optlab.analysis.convergence import loss_gap, run_rows, settling

STEPS = np.arange(0, 1001, 50)


def test_loss_gap_is_max_minus_min_over_the_last_fifth():
    loss = np.linspace(2.0, 1.0, len(STEPS))  # last fifth: steps 800..1000
    gap, relative = loss_gap(STEPS, loss)
    window = loss[STEPS >= 800]
    assert gap == pytest.approx(window.max() - window.min())
    assert relative == pytest.approx(gap / window.mean())


def test_a_line_has_not_settled_and_a_plateau_has():
    assert not settling(STEPS, 0.5 + 1e-3 * STEPS).settled
    rng = np.random.default_rng(0)
    plateau = np.where(STEPS < 400, STEPS / 400, 1.0) + 0.01 * rng.normal(size=len(STEPS))
    s = settling(STEPS, plateau)
    assert s.settled and 300 <= s.settle_step <= 450


def test_a_constant_has_settled_from_the_start():
    s = settling(STEPS, np.ones(len(STEPS)))
    assert s.settled and s.settle_step == 0 and s.drift == pytest.approx(0, abs=1e-9)


def test_run_rows_name_each_tensor_and_the_share():
    import pandas as pd

    rows = [("r", "eval", "loss", int(t), 1.0) for t in STEPS]
    rows += [("r", "params", "a/mean", int(t), 1.0) for t in STEPS]
    rows += [("r", "params", "b/mean", int(t), float(t)) for t in STEPS]
    m = pd.DataFrame(rows, columns=["run_id", "split", "name", "step", "value"])
    out = {name: value for _, _, name, _, value in run_rows("r", m)}
    assert out["a/settled"] == 1.0 and out["b/settled"] == 0.0 and out["settled_share"] == 0.5
    assert out["loss_gap"] == 0.0 and "b/settle_step" not in out
