"""The HTML report: self-contained, escaped, with the metrics table, and it renders in a real
headless Chromium with every figure loaded, no console error and no request but the file."""

import base64
import io
import math
import re
import shutil

import pytest
from PIL import Image

from optlab.analysis.stats import summarize
from optlab.store import Store
from optlab.viz.report import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def report(mini_store, tmp_path_factory):
    return write_report(mini_store, tmp_path_factory.mktemp("report") / "report.html")


def test_report_is_self_contained_and_escaped(report):
    page = report.read_text()
    assert "mini &lt;ladder&gt; &amp; co" in page and "<ladder>" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    # task, curves, weight bands, a decision map per condition, centers for the centers case
    assert len(sources) == 3 + 2 + 1
    assert all(s.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for s in sources)
    for s in sources:
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    assert not re.search(r'(src|href)="(https?:|//)', page)


def test_report_table_is_mean_and_95_interval_over_seeds(report, mini_store):
    store = Store(mini_store)
    runs, finals = store.runs(), store.final_metrics()
    ids = runs.loc[runs["case"] == "centers", "id"]
    values = [finals[i]["test_accuracy"] for i in ids]
    store.close()
    row = re.search(r"<tr><td>centers</td>.*?</tr>", report.read_text()).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:4] == ["centers", "16", "1, 2", "complete 2"]
    s = summarize(values)
    assert s.lo <= s.mean <= s.hi and math.isclose(s.mean, sum(values) / 2)
    assert cells[4] == f"{s.mean:.4f} [{s.lo:.4f}, {s.hi:.4f}]"


def test_report_renders_in_chromium(report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    problems, requests = [], []
    with playwright.sync_playwright() as p:
        # each launch gets a fresh temporary profile (Playwright's own --user-data-dir)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri(), wait_until="load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
        browser.close()
    assert problems == []
    assert requests == [report.as_uri()]  # the figures are data URIs: nothing else was fetched
    assert len(images) == 6 and all(ok and w > 0 and h > 0 for ok, w, h in images)
    with Image.open(tmp_path / "shot.png") as shot:
        assert shot.size[0] == 1400  # no figure overflows the page
        assert shot.size[1] > 2000  # the whole page, figures included
        assert len(shot.convert("L").getcolors()) > 16  # not a blank page


def test_report_shows_the_verdicts_on_the_claims_its_experiments_bear_on(tmp_path):
    from optlab.analysis.claims import judge
    from tests.analysis.test_claims import AS_THE_PAPER, _final_store

    store = _final_store(tmp_path / "s.db", AS_THE_PAPER)
    verdicts, tests = judge(store, experiments={"final"})
    store.close()
    page = write_report(tmp_path / "s.db", tmp_path / "r.html").read_text()
    assert "The paper&#x27;s claims" in page or "The paper's claims" in page
    assert f"Holm-corrected over {tests} tests" in page
    assert page.count("<b>holds</b>") == sum(v.verdict == "holds" for v in verdicts) == 15
    assert "With L1 decay" not in page  # the optimization experiment is not in this store


def _page(store_path, tmp_path) -> str:
    """The report's text without its figures' data."""
    page = write_report(store_path, tmp_path / "r.html").read_text()
    return re.sub(r'src="data:[^"]+"', 'src=""', page)


def _finals(page: str) -> tuple[list[str], list[list[str]]]:
    """The final-metrics table: its header and its rows of cells."""
    table = re.search(r"<h3>Final metrics</h3>.*?</table>", page).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    return re.findall(r"<th>(.*?)</th>", rows[0]), [
        re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows[1:]
    ]


def test_report_of_a_regression_shows_loss_and_the_solutions_not_accuracy(workload_store, tmp_path):
    page = _page(workload_store("mg_toy"), tmp_path)
    head, rows = _finals(page)
    assert head[-4:] == ["test_loss", "eval_loss", "scalars_memorizer_mean", "scalars_generalizer"]
    assert not any("accuracy" in h for h in head)
    assert len(rows) == 6  # the six optimizer cases, one seed each
    for cells in rows:  # every metric cell a number: nothing missing, no NaN
        assert all(re.fullmatch(r"-?\d+\.\d{4}", c) for c in cells[-4:]), cells
    sgd = next(cells for cells in rows if cells[0] == "sgd")
    # full-batch gradient descent from w = 0 stays in the data's row space: the min-norm fit
    assert sgd[-2:] == [f"{1 / 101:.4f}", f"{100 / 101:.4f}"]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions[0].startswith("mg_toy: eval loss per condition")  # one panel, no accuracy
    assert "memorizers&#x27; mean and the generalizer" in captions[1]
    assert len(captions) == 3  # eval loss, the solutions, weight bands: no Voronoi pictures


def test_report_of_a_language_model_is_in_bits_per_character(workload_store, tmp_path):
    page = _page(workload_store("charlm"), tmp_path)
    head, rows = _finals(page)
    assert head[-5:] == [
        "test_bits_per_char",
        "test_accuracy",
        "test_loss",
        "eval_accuracy",
        "eval_loss",
    ]
    for cells in rows:  # bits per character is the loss in nats over ln 2
        bits, loss = float(cells[-5]), float(cells[-3])
        assert math.isclose(bits, loss / math.log(2), abs_tol=2e-4)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions and all("eval bits per character and accuracy" in c for c in captions)
    assert "Voronoi" not in page and "Decision map" not in page


def test_report_of_digits_has_curves_and_bands_but_no_voronoi_pictures(workload_store, tmp_path):
    page = _page(workload_store("digits"), tmp_path)
    head, rows = _finals(page)
    assert head[-4:] == ["test_accuracy", "test_loss", "eval_accuracy", "eval_loss"]
    assert "model.kwargs.normalization" in head  # the grid's axis, a column of its own
    assert len(rows) == 6 * 3  # six cases × three normalizations
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    # three groups of cases (decay type; SGD with momentum; Adam), curves and bands for each
    assert sum("eval loss and accuracy" in c for c in captions) == 3
    assert sum("weight bands" in c for c in captions) == 3
    assert len(captions) == 6 and "Voronoi" not in page


SCALE_INVARIANCE = ("momentum_decay", "small_lr", "small_lr_decay", "small_lr_graft")


def _scale_invariance_store(path, name: str = "scale_invariance"):
    """The figures' synthetic scale-invariance runs, four cases that each change their own
    settings (none a baseline), two seeds."""
    from tests.analysis.fake import fake_store
    from tests.viz.test_invariance import CASES, SPEC, _curves

    spec = {**SPEC, "name": name, "cases": {c: CASES[c] for c in SCALE_INVARIANCE}}
    fake_store(path, spec, lambda run: {"test_accuracy": 0.9}, curves=_curves).close()


def test_report_has_a_claims_section_per_catalog(tmp_path, monkeypatch):
    from optlab.analysis.claims import judge
    from optlab.viz import report
    from tests.analysis.test_claims import AS_THE_PAPER, _final_store

    _final_store(tmp_path / "s.db", AS_THE_PAPER).close()
    _scale_invariance_store(tmp_path / "s.db")
    store = Store(tmp_path / "s.db")
    verdicts, tests = judge(store, experiments={"final", "scale_invariance"})
    store.close()
    monkeypatch.setattr(report, "_figures", lambda *args: [])  # the claims alone: fast
    page = _page(tmp_path / "s.db", tmp_path)
    sections = re.findall(r"<section><h2>([^<]*)</h2><p>From ([^<]*)\.</p>(.*?)</section>", page)
    assert [(title, source) for title, source, _ in sections] == [
        ("The paper&#x27;s claims", "Yu (2022) and its code&#x27;s README"),
        ("The theory&#x27;s claims", "the 2023 essay on AdamW; Grosse (2022), CSC 2541 lecture 5"),
    ]
    for (_, _, body), catalog in zip(sections, ("paper", "theory"), strict=True):
        heads = re.findall(r"<th>(.*?)</th>", body)
        assert heads[2] == catalog  # the source's own value: the paper's, the theory's
        rows = re.findall(r"<tr><td>", body)
        assert len(rows) == sum(v.catalog == catalog for v in verdicts) > 0
    assert page.count("Holm-corrected over") == 1 and f"over {tests} tests" in sections[1][2]
    assert "memorize" not in page.lower()  # no mg_toy runs: none of the toy's claims


def test_report_of_scale_invariance_draws_its_figures_once(tmp_path):
    _scale_invariance_store(tmp_path / "s.db", name="invariance")
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", _page(tmp_path / "s.db", tmp_path))
    # each case changes its own settings: one group of the four, not four groups of one
    expected = [
        "eval accuracy per condition",
        "‖w‖ of each scale-invariant weight",
        "effective_lr per tensor",
        "invariance angular_update per tensor",
        "invariance grad_cosine per tensor",
        "the angular update per step ∠(w_k, w_{k+1})",
        "norm grafting: eval accuracy",
    ]
    assert len(captions) == len(expected)
    for caption, start in zip(captions, expected, strict=True):
        assert caption.startswith(f"invariance: {start}"), caption


def test_report_of_kfac_draws_the_damping_and_jacobian_figures(tmp_path):
    from tests.analysis.fake import fake_store
    from tests.viz.test_kfac import SPEC, _curves

    fake_store(tmp_path / "s.db", SPEC, lambda run: {"test_accuracy": 0.9}, curves=_curves).close()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", _page(tmp_path / "s.db", tmp_path))
    # no eval curves or params in this store: the K-FAC figures alone, once each
    expected = [
        "mechanism 3: each K-FAC layer&#x27;s damping ratio γ/(λ_max(A)·λ_max(G))",
        "the traces of each K-FAC layer&#x27;s running factors A (top) and G (bottom)",
        "mechanism 2: θᵀĜθ / ((L + 1)·E tr(J Σ Jᵀ))",
    ]
    assert len(captions) == len(expected)
    for caption, start in zip(captions, expected, strict=True):
        assert caption.startswith(f"kfac: {start}"), caption
    assert "under the Fisher without decay the ratio falls early, then rises above 1" in captions[0]
