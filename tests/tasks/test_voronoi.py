"""The environment: the original generator's draws, both rules, determinism across processes."""

import json
import subprocess
import sys

import numpy as np

from optlab.tasks.voronoi import assign_labels, make_environment


def test_paper_rule_reproduces_the_original_draws():
    env = make_environment(2, 2, 100, 50, 50, 42, "paper")
    np.random.seed(42)  # the original: legacy global state, in this order
    k = np.random.randint(100, 151)
    centers = (2 * np.random.rand(k, 2) - 1) * 100
    center_labels = np.random.randint(2, size=k)
    points = (2 * np.random.rand(200, 2) - 1) * 100
    c_hat = centers / np.linalg.norm(centers, axis=1, keepdims=True) ** 2
    labels = center_labels[((points @ c_hat.T - 1) ** 2).argmin(1)]
    assert env.k == k == 138
    np.testing.assert_array_equal(env.centers, centers.astype(np.float32))
    np.testing.assert_array_equal(env.points["eval"], points[100:150].astype(np.float32))
    np.testing.assert_array_equal(env.labels["test"], labels[150:])


def test_euclidean_rule_is_nearest_center():
    centers = np.array([[0.0, 0.0], [10.0, 0.0]])
    points = np.array([[4.9, 3.0], [5.1, -3.0], [-50.0, 0.0]])
    assert assign_labels(points, centers, np.array([0, 1]), "euclidean").tolist() == [0, 1, 0]


def test_paper_rule_is_not_euclidean():
    """x = (5, 0): nearest center is c0 = (1, 0) (distance 4 vs 5), but d0 = x·c0/‖c0‖² = 5 and
    d1 = x·c1/‖c1‖² = 0.5 for c1 = (10, 0), so the paper's rule, (d − 1)² = 16 vs 0.25, picks c1."""
    centers, labels, x = (
        np.array([[1.0, 0.0], [10.0, 0.0]]),
        np.array([0, 1]),
        np.array([[5.0, 0.0]]),
    )
    assert assign_labels(x, centers, labels, "euclidean").tolist() == [0]
    assert assign_labels(x, centers, labels, "paper").tolist() == [1]


def test_summary_counts_and_majority_accuracy():
    env = make_environment(3, 4, 300, 200, 100, 7, "euclidean")
    s = env.summary()
    assert s["k"] == len(s["centers"]) and s["dim"] == 3
    for split, n in (("train", 300), ("eval", 200), ("test", 100)):
        counts = np.bincount(env.labels[split], minlength=4)
        assert s[split]["class_counts"] == counts.tolist()
        assert s[split]["majority_accuracy"] == counts.max() / n


def test_task_json_is_the_same_in_fresh_processes():
    cmd = [sys.executable, "-m", "optlab.cli", "task", "--json", "--set", "train.steps=100"]
    outs = [
        subprocess.run(cmd, capture_output=True, text=True, check=True).stdout for _ in range(2)
    ]
    assert outs[0] == outs[1]
    data = json.loads(outs[0])
    assert data["k"] == 138 and len(data["centers"]) == 138
    assert 0.5 <= data["eval"]["majority_accuracy"] < 1
