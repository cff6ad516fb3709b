"""The memory estimate of one run in a stack, and stacks split to fit a budget."""

import pytest

from optlab.config import RunSpec
from optlab.engine import memory
from optlab.engine.sweep import group_runs


def _final(hidden=16, batch=64, seed=0, lr=1e-3):
    return RunSpec.model_validate(
        {
            "model": {"name": "final", "hidden_dim": hidden},
            "optimizer": {"lr": lr},
            "train": {"steps": 10, "batch_size": batch, "seed": seed},
            "task": {"n_eval": 50, "n_test": 50},
        }
    )


def test_run_bytes_counts_parameters_and_activations_by_hand():
    # final at D = 2, H = 16, C = 2: norms 2 + 16 + 16 + 2, weights 2·16 + 16·16 + 16·16 + 16·2
    params = 36 + 32 + 256 + 256 + 32
    assert memory.run_bytes(_final()) == 4 * (6 * params + 12 * 64 * 16)
    assert memory.runs_that_fit(_final(), 10 * memory.run_bytes(_final()) + 5) == 10
    assert memory.runs_that_fit(_final(), 1) == 1  # a run that does not fit still trains


def test_a_budget_splits_stacks_evenly_and_never_beyond_max_runs():
    specs = [_final(seed=s, lr=lr) for s in range(5) for lr in (1e-3, 1e-2)]  # one group of 10
    one = memory.run_bytes(specs[0])
    assert [len(s) for s in group_runs(specs)] == [10]
    assert [len(s) for s in group_runs(specs, max_memory=int(3.5 * one))] == [3, 3, 2, 2]
    assert [len(s) for s in group_runs(specs, max_runs=4, max_memory=100 * one)] == [4, 3, 3]
    assert [len(s) for s in group_runs(specs, max_memory=one // 2)] == [1] * 10


@pytest.mark.parametrize(
    "text,expected",
    [("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GB", 3 * 2**29), ("1000", 1000)],
)
def test_parse_bytes(text, expected):
    assert memory.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", ""])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        memory.parse_bytes(text)
