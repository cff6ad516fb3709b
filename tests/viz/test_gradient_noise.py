"""The grad_stats figure on a synthetic store: a panel per recorded quantity, None without."""

from optlab.viz import gradient_noise
from optlab.viz.data import load_experiment_record
from optlab.viz.gradient_noise import plot_gradient_noise
from tests.analysis.fake import fake_store

SPEC = {
    "name": "gn",
    "base": {"model": {"name": "final"}, "probes": {"record": ["grad_stats"]}},
    "cases": {"adam": {"optimizer.name": "adam"}, "adamw": {}},
    "seeds": [0, 1],
}


def _curves(run):
    seed = run.spec.train.seed
    kl = [(t, 100.0 / (1 + t) * (1 + seed)) for t in range(10, 101, 10)]
    cos = [(t, 0.5 - 0.01 * t) for t in range(10, 101, 10)]  # crosses 0: a linear axis
    return {"grad_stats": {"kl_adam": kl, "cos_update_grad": cos}}


def test_a_panel_per_quantity_recorded(tmp_path, monkeypatch):
    store = fake_store(tmp_path / "s.db", SPEC, lambda run: {}, curves=_curves)
    record = load_experiment_record(store, "gn")
    figures = []
    save = gradient_noise.save
    monkeypatch.setattr(
        gradient_noise, "save", lambda fig, path: figures.append(fig) or save(fig, path)
    )
    png = plot_gradient_noise(record, tmp_path / "gn.png")
    assert png is not None and png.stat().st_size > 0
    (fig,) = figures
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(titled) == {"kl_adam", "cos_update_grad"}
    assert titled["kl_adam"].get_yscale() == "log"  # 100/11 … 200/101: over a decade
    assert titled["cos_update_grad"].get_yscale() == "linear"
    # each condition's line is its mean over the two seeds: 1.5 × 100/(1 + t) at t = 10
    lines = {line.get_label(): line for line in titled["kl_adam"].get_lines()}
    assert abs(lines["adam"].get_ydata()[0] - 1.5 * 100 / 11) < 1e-4


def test_nothing_without_the_probe(tmp_path):
    store = fake_store(tmp_path / "s.db", SPEC, lambda run: {"test_accuracy": 0.5})
    assert plot_gradient_noise(load_experiment_record(store, "gn"), tmp_path / "x.png") is None
