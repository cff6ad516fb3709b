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


def test_probe_figures_have_a_panel_per_tensor(tmp_path):
    from optlab.config import expand, load_experiment
    from optlab.engine import run_planned
    from optlab.viz.weights import plot_per_tensor, quantities

    spec = load_experiment(
        {
            "name": "p",
            "base": {
                "model": {"name": "final", "hidden_dim": 8, "layernorm_normalization": True},
                "probes": {"record": ["update", "effective_lr"]},
            },
        }
    )
    store = Store(tmp_path / "p.db")
    small = {"train.steps": 20, "train.eval_every": 10, "task.n_eval": 50, "task.n_test": 50}
    run_planned(expand(spec, small), store)
    rec = load_experiment_record(store, "p")
    assert quantities(rec, "update") == [
        "adaptive_ratio",
        "decay_ratio",
        "decay_share",
        "update_ratio",
    ]
    # effective lr: the four Dense weights (ReLU, normalised layernorms): one row of 4 panels
    with Image.open(
        plot_per_tensor(rec, "effective_lr", "effective_lr", tmp_path / "e.png", "")
    ) as im:
        assert im.size == (4 * 8 * 80, 6 * 80)
    # the update split covers all 8 tensors: two rows of 4
    with Image.open(plot_per_tensor(rec, "update", "decay_share", tmp_path / "u.png", "")) as im:
        assert im.size == (4 * 8 * 80, 2 * 6 * 80)
    assert plot_per_tensor(rec, "moments", "m_hat_norm", tmp_path / "m.png", "") is None
    store.close()
