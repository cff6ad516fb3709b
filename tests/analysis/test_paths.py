"""An analysis compares the runs of one numeric path and names what it leaves out."""

from optlab.analysis.cells import cells
from optlab.analysis.paths import compare_one_path, machine_part
from tests.analysis.fake import fake_store

HERE, OLD = "torch 2, cpu, float32, eager", "torch 1, cpu, float32, eager"
SPEC = {
    "name": "p",
    "base": {"model": {"name": "plus_minus"}},
    "cases": {"a": {"optimizer.lr": 1e-3}, "b": {"optimizer.lr": 1e-2}},
    "seeds": [1, 2, 3, 4],
}


def _store(tmp_path):
    # seed 4 of case b computed by another torch, with a result far off the others'; case a
    # by the pure rule, case b by the fused kernel: a difference the configs make
    def path_of(run):
        machine = OLD if run.spec.train.seed == 4 and run.case == "b" else HERE
        return f"{machine} | {'pure' if run.case == 'a' else 'fused'} adamw"

    return fake_store(
        tmp_path / "s.db",
        SPEC,
        lambda run: {"test_accuracy": 0.1 if run.spec.train.seed == 4 and run.case == "b" else 0.9},
        path_of=path_of,
    )


def test_the_path_of_most_runs_is_compared_and_the_others_named(tmp_path):
    store = _store(tmp_path)
    assert store.numeric_paths(["p"]) == {
        f"{HERE} | pure adamw": 4,
        f"{HERE} | fused adamw": 3,
        f"{OLD} | fused adamw": 1,
    }
    compared = compare_one_path(store, ["p"])
    here, old = machine_part(HERE), machine_part(OLD)
    assert (compared.path, compared.runs, compared.others) == (here, 7, {old: 1})
    assert "1 computed as " + old in compared.note() and "--fresh" in compared.note()
    runs = store.runs("p")
    assert {p.split(" | ")[0] for p in runs["numeric_path"]} == {HERE} and len(runs) == 7
    table = cells(store, "p").set_index("case")
    assert table.loc["b", "seeds"] == 3 and table.loc["b", "test_accuracy"] == 0.9


def test_one_path_needs_no_note(tmp_path):
    store = fake_store(
        tmp_path / "s.db",
        SPEC,
        lambda run: {"test_accuracy": 0.9},
        path_of=lambda run: f"{HERE} | {'pure' if run.case == 'a' else 'fused'} adamw",
    )
    compared = compare_one_path(store)
    assert compared.others == {} and compared.note() is None and compared.runs == 8


def test_cases_that_set_another_dtype_are_compared_with_the_rest(tmp_path):
    """train.dtype is in a run's config (its id), not in how the machine computed it."""
    spec = {**SPEC, "cases": {"a": {}, "b": {"train.dtype": "float64"}}}
    store = fake_store(
        tmp_path / "s.db",
        spec,
        lambda run: {"test_accuracy": 0.9},
        path_of=lambda run: f"torch 2, cpu, {run.spec.train.dtype}, eager | pure adamw",
    )
    compared = compare_one_path(store, ["p"])
    assert compared.others == {} and compared.runs == 8
    assert compared.path == "torch 2, cpu, eager"
