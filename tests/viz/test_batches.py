"""The batch figures on synthetic stores: each is written where the record has what it
draws, None where not."""

from dataclasses import replace

from optlab.viz.batches import plot_rules_by_batch, plot_samples
from optlab.viz.data import load_experiment_record
from tests.analysis.fake import fake_store
from tests.analysis.test_batches import SPEC, TEST, _curves

RULES = {
    "name": "rules",
    "base": {
        "model": {"name": "final", "hidden_dim": 8},
        "train": {"steps": 100, "data": "dataset"},
        "probes": {"record": ["grad_stats"]},
    },
    "grid": {"optimizer.name": ["signsgd", "adam"]},
    "cases": {"b32": {"train.batch_size": 32}, "b4096": {"train.batch_size": 4096}},
    "seeds": [0],
}


def test_samples_figure_from_a_record_whose_batches_differ(tmp_path):
    store = fake_store(
        tmp_path / "s.db", SPEC, lambda run: {"test_accuracy": TEST[run.case]}, curves=_curves
    )
    record = load_experiment_record(store, "ab")
    assert plot_samples(record, tmp_path / "f.png").stat().st_size > 10_000
    assert plot_rules_by_batch(record, tmp_path / "r.png") is None  # one rule
    one = record.runs[record.runs["case"] == "fixed_8"]
    m = record.metrics
    fixed = replace(record, runs=one, metrics=m[m["run_id"].isin(one["id"])])
    assert plot_samples(fixed, tmp_path / "g.png") is None  # one fixed batch


def test_rules_figure_needs_rules_batches_and_the_noise_scale(tmp_path):
    def curves(run):
        return {"grad_stats": {"noise_scale": [(100, 64.0)]}}

    store = fake_store(tmp_path / "s.db", RULES, lambda run: {"test_accuracy": 0.8}, curves=curves)
    record = load_experiment_record(store, "rules")
    assert plot_rules_by_batch(record, tmp_path / "r.png").stat().st_size > 10_000
    assert plot_samples(record, tmp_path / "f.png") is None  # rules differ: the figure above
    m = record.metrics
    bare = replace(record, metrics=m[m["split"] != "grad_stats"])
    assert plot_rules_by_batch(bare, tmp_path / "n.png") is None
