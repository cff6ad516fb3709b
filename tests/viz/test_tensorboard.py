"""TensorBoard export: the event files hold the store's scalars and snapshot histograms."""

import pytest

from optlab.store import Store
from optlab.viz.tensorboard import export_tensorboard


def test_event_files_hold_the_stores_values(mini_store, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    folders = export_tensorboard(mini_store, tmp_path)
    assert len(folders) == 4
    store = Store(mini_store)
    runs = store.runs()
    run_id = runs.loc[runs["case"] == "centers", "id"].iloc[0]
    folder = next(f for f in folders if f.name == run_id)
    assert folder.parent.name == "centers" and folder.parent.parent.name == "mini__ladder____co"
    events = accumulator.EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0}
    )
    events.Reload()
    m = store.metrics([run_id])
    assert len(events.Tags()["scalars"]) == m.groupby(["split", "name"]).ngroups
    acc = m[(m["split"] == "eval") & (m["name"] == "accuracy")]
    logged = [(e.step, e.value) for e in events.Scalars("eval/accuracy")]
    assert logged == [(s, pytest.approx(v)) for s, v in zip(acc["step"], acc["value"], strict=True)]
    hist = events.Histograms("snapshot/centers")
    centers = store.array(run_id, "snapshot/centers")
    assert [h.step for h in hist] == sorted(centers)
    last = hist[-1].histogram_value
    assert last.num == centers[max(centers)].size and last.max == pytest.approx(
        centers[max(centers)].max()
    )
    store.close()
