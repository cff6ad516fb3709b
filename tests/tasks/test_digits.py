"""The digits task: sizes, disjoint stratified splits fixed by the seed, pixel range."""

import json

import numpy as np
import torch

from optlab.tasks.digits import SPLITS, make_digits

N_IMAGES = 1797  # sklearn's bundled digits


def test_split_sizes_add_to_the_whole():
    task = make_digits()
    sizes = {s: len(task.labels[s]) for s in SPLITS}
    assert sum(sizes.values()) == N_IMAGES
    assert abs(sizes["test"] - 0.15 * N_IMAGES) <= 1 and abs(sizes["eval"] - 0.15 * N_IMAGES) <= 1


def test_splits_are_disjoint():
    """No image appears in two splits (rows compared as bytes; all 1,797 rows are distinct)."""
    task = make_digits()
    rows = {s: {r.tobytes() for r in task.inputs[s]} for s in SPLITS}
    assert sum(len(r) for r in rows.values()) == N_IMAGES
    assert not rows["train"] & rows["eval"]
    assert not rows["train"] & rows["test"]
    assert not rows["eval"] & rows["test"]


def test_splits_are_stratified():
    """Each split's class shares are within 0.02 of the whole's (about 0.10 each)."""
    task = make_digits()
    whole = np.bincount(np.concatenate([task.labels[s] for s in SPLITS]), minlength=10)
    whole = whole / whole.sum()
    for s in SPLITS:
        share = np.bincount(task.labels[s], minlength=10) / len(task.labels[s])
        assert np.abs(share - whole).max() < 0.02, s


def test_seed_fixes_the_split():
    a, b, c = make_digits.__wrapped__(0), make_digits.__wrapped__(0), make_digits.__wrapped__(1)
    np.testing.assert_array_equal(a.inputs["test"], b.inputs["test"])
    np.testing.assert_array_equal(a.labels["train"], b.labels["train"])
    assert not np.array_equal(a.inputs["test"], c.inputs["test"])


def test_tensors_pixel_range_and_dtypes():
    x, y = make_digits().tensors("train")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1:] == make_digits().input_shape == (64,) and x.shape[0] == y.shape[0]
    assert x.min().item() == 0.0 and x.max().item() == 1.0  # 0..16 scaled by 1/16


def test_summary_is_json_and_counts():
    task = make_digits()
    s = json.loads(json.dumps(task.summary()))
    assert s["classes"] == 10 and s["input_shape"] == [64] and s["seed"] == 0
    for split in SPLITS:
        counts = np.bincount(task.labels[split], minlength=10)
        assert s[split]["n"] == counts.sum() and s[split]["class_counts"] == counts.tolist()
        assert s[split]["majority_accuracy"] == counts.max() / counts.sum()
    assert task.arrays() == {}
