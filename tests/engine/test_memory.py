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


def _voronoi(**train):
    return RunSpec.model_validate(
        {
            "train": {"steps": 1000, "batch_size": 32, **train},
            "task": {"n_eval": 500, "n_test": 500},
        }
    )


def test_data_bytes_counts_every_voronoi_point_drawn_in_either_mode():
    # D = 2: 12·2 + 48 = 72 bytes a point, and two (rows, 151) float64 score arrays of the
    # points labelled at a time (all of them, under 2^18)
    stream = _voronoi()
    n = 1000 * 32 + 500 + 500
    need, what = memory.data_bytes(stream)
    assert need == 72 * n + 2 * n * 151 * 8
    assert what.startswith("train.steps × train.batch_size: 1,000 × 32 points need ~")
    dataset = _voronoi(data="dataset")
    assert memory.data_bytes(dataset)[0] == 72 * 11_000 + 2 * 11_000 * 151 * 8  # n_train 10k
    assert memory.data_bytes(dataset)[1].startswith("task.n_train: 10,000 points")
    growing = _voronoi(batch_milestones=[500])  # Σ B_t = 500·32 + 500·64
    assert memory.data_bytes(growing)[0] == 72 * 49_000 + 2 * 49_000 * 151 * 8
    huge = _voronoi(steps=10_000_000, batch_size=1024)  # counted, not listed or drawn
    n = 10_000_000 * 1024 + 1000
    assert memory.data_bytes(huge)[0] == 72 * n + 2 * 2**18 * 151 * 8  # ~687 GB: 2^18 rows a chunk
    toy = RunSpec.model_validate(
        {"task": {"name": "mg_toy", "samples": 1000}, "model": {"name": "linear"}}
    )
    assert memory.data_bytes(toy) == (20 * 1000 * 1001, memory.data_bytes(toy)[1])


def test_check_fits_refuses_with_one_line_naming_the_fields_and_the_budget():
    small = _final()
    memory.check_fits([small], 2**30, "--max-memory is 1.0 GB")  # fits: nothing raised
    with pytest.raises(ValueError) as err:
        memory.check_fits([_voronoi(steps=10_000_000, batch_size=1024)], 2**30, "budget 1 GB")
    assert str(err.value).startswith(
        "train.steps × train.batch_size: 10,000,000 × 1,024 points need ~687 GB in stream "
        "mode (10,240,001,000 points drawn with the training, eval and test sets); budget 1 GB"
    )
    wide = _final(hidden=100_000)  # two H × H weights: 4 bytes · 6 copies · 2·10^10 = 447 GB
    with pytest.raises(ValueError) as err:
        memory.check_fits([small, wide], 2**30, "budget 1 GB")
    assert str(err.value).startswith(
        "model.hidden_dim: 100,000 (final) at train.batch_size 64: one run needs ~447 GB"
    )
    assert str(err.value).endswith("beside ~1.8 MB of data; budget 1 GB")


def test_run_bytes_draws_no_parameters_and_no_points():
    """A width no machine holds is estimated, not allocated: parameters on the meta device,
    the voronoi task drawn with one point per split (the same centers)."""
    centers = RunSpec.model_validate(
        {"model": {"name": "centers", "hidden_dim": 10**9}, "train": {"steps": 10**9}}
    )
    # H = 10^9 learned centers of D = 2, the head's H × 2 weights, offset, scale and the
    # plus-minus pair; activations 12 · 32 points · H
    H = 10**9
    assert memory.run_bytes(centers) == 4 * (6 * (2 * H + 2 * H + 4) + 12 * 32 * H)


def test_the_budget_is_this_machines_available_memory_and_sizes_read_as_people_do():
    available = memory.available_memory()
    assert available is None or available > 0
    assert [memory.size_text(n) for n in (512, 3 * 2**10, 1.5 * 2**30, 80 * 2**30)] == [
        "512 B",
        "3.0 KB",
        "1.5 GB",
        "80 GB",
    ]
