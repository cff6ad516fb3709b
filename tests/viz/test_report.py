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
    assert page.count("<b>holds</b>") == sum(v.verdict == "holds" for v in verdicts) == 9
    assert "With L1 decay" not in page  # the optimization experiment is not in this store
