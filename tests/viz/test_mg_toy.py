"""The memorize-or-generalize figure: log steps from the first eval after 0, a line per
condition, and the reference solutions at the values the essay derives for n = 100."""

from dataclasses import replace

from PIL import Image

from optlab.store import Store
from optlab.viz.data import load_experiment_record
from optlab.viz.figure import plt
from optlab.viz.mg_toy import memorize_generalize_figure, plot_memorize_generalize


def test_reference_lines_sit_at_the_min_norm_and_the_l_inf_solutions(workload_store, tmp_path):
    store = Store(workload_store("mg_toy"))
    rec = load_experiment_record(store, "mg_toy")
    store.close()
    fig = memorize_generalize_figure(rec)
    memorizer, generalizer = fig.axes
    for ax, min_norm_value in ((memorizer, 1 / 101), (generalizer, 100 / 101)):
        assert ax.get_xscale() == "log"
        lines = {line.get_label(): line for line in ax.get_lines()}
        references = [label for label in lines if "norm" in label or "L∞" in label]
        assert len(references) == 2
        reference = next(lines[label] for label in references if "n = 100" in label)
        assert list(reference.get_ydata()) == [min_norm_value] * 2
        assert list(lines["L∞ (Adam): 1/2"].get_ydata()) == [0.5, 0.5]
        cases = [lines[c] for c in rec.conditions]  # one line per case, one seed each
        assert len(cases) == 6
        assert all(list(line.get_xdata()) == [20, 40, 60] for line in cases)  # no step 0
    plt.close(fig)
    with Image.open(plot_memorize_generalize(rec, tmp_path / "mg.png")) as im:
        assert im.size == (16 * 80, 6 * 80)  # two panels of 8 × 6 inches at 80 dpi


def test_no_figure_without_the_toy_scalars(workload_store):
    store = Store(workload_store("mg_toy"))
    rec = load_experiment_record(store, "mg_toy")
    store.close()
    other = replace(rec, metrics=rec.metrics[rec.metrics["split"] != "scalars"])
    assert memorize_generalize_figure(other) is None
