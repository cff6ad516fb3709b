"""Figures from the store: files with the frames and panels the record implies."""

from PIL import Image

from optlab.store import Store
from optlab.viz.animation import animate_centers, animate_decision_map, frame_steps
from optlab.viz.curves import plot_eval_curves
from optlab.viz.data import experiments, load_experiment_record
from optlab.viz.weights import plot_weight_bands, tensor_names


def test_frame_steps_keep_ends_and_limit():
    assert frame_steps([0, 1, 2], limit=5) == [0, 1, 2]
    picked = frame_steps(list(range(0, 1001, 10)), limit=5)
    assert picked == [0, 250, 500, 750, 1000]


def test_static_figures(mini_store, tmp_path):
    store = Store(mini_store)
    rec = load_experiment_record(store, experiments(store)[0])
    assert tensor_names(rec) == ["W", "centers", "offset", "plus_minus", "scale"]
    for path in (
        plot_eval_curves(rec, tmp_path / "c.png"),
        plot_weight_bands(rec, tmp_path / "w.png"),
    ):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 500
    with Image.open(tmp_path / "w.png") as im:  # 5 tensors: 2 rows of 4 panels, 8 × 6 in each
        assert im.size == (4 * 8 * 80, 2 * 6 * 80)
    store.close()


def test_animations_have_one_frame_per_recorded_step(mini_store, tmp_path):
    store = Store(mini_store)
    rec = load_experiment_record(store, experiments(store)[0])
    centers_run = rec.runs.loc[rec.runs["case"] == "centers", "id"].iloc[0]
    pm_run = rec.runs.loc[rec.runs["case"] == "plus_minus", "id"].iloc[0]
    gif = animate_decision_map(store, centers_run, tmp_path / "m.gif", "centers")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4  # steps 0, 20, 40, 60
    with Image.open(animate_centers(store, centers_run, tmp_path / "c.gif", "c")) as im:
        assert im.n_frames == 4
    assert animate_centers(store, pm_run, tmp_path / "none.gif", "pm") is None  # no centers
    store.close()
