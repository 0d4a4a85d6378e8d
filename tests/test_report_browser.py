"""The results page in a real browser (issue 17): a small taxonomic run on the tiny random models
(real embedded images), its report.html opened from file:// in headless Debian Chromium through
Selenium and chromedriver. Checked: no JavaScript error in the console (level SEVERE), every
figure drawn (its plot holds an svg), the tables hold the CSV's numbers, sorting and the
gallery filter work, every gallery image decoded (naturalWidth > 0), and no request left the
file (Chrome's performance log: every Network.requestWillBeSent URL is file: or data:).
Two deliberately broken pages show that the checks fail when a figure is missing or a request
goes to the network. A screenshot lands in figures/out/report_screenshot.png."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import plotly.graph_objects as go
import pytest

from interp.io import read_csv
from interp.pages import Page, Plot, Section, write_page
from interp.studies.taxonomy import page as taxonomy_page
from interp.studies.taxonomy.tables import headline_rows, read_results

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "figures" / "out" / "report_screenshot.png"
# what Chromium must not do on its own on a closed network (see the machine notes in README)
QUIET = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--window-size=1300,1800")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from interp.data.images import verify

    ok, why = verify()
    if not ok:
        pytest.skip(f"embedded image set not built ({why}): run `python -m interp.data.build`")
    from interp.studies.taxonomy.config import load_config
    from interp.studies.taxonomy.run import run_study

    out = tmp_path_factory.mktemp("browser") / "run"
    cfg = load_config(ROOT / "experiments" / "quick.toml", {
        "out_dir": str(out), "data.max_concepts": 12, "model.lm": "tiny-llama", "model.encoder": "tiny-encoder",
        "model.pool_to": 1, "train.eval_every": 5, "grid.worlds": ("original", "across"),
        "grid.ablations": ("random:0.5",), "grid.control_ablations": ("random:1.0",), "eval.lm_only_things": False,
        "prototypes.refine_steps": 10, "prototypes.format_steps": 5})
    result = run_study(cfg, progress=False, source="experiments/quick.toml (tiny)")
    assert Path(result["page"]) == out / "report.html"
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in QUIET:
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(120)
    driver.get("about:blank")  # the new-tab page's own chrome:// loads finish before a test's page
    yield driver
    driver.quit()


def load(driver, page: Path, n_plots: int, timeout: float = 60.0) -> None:
    """Open ``page`` and wait until the document is complete and ``n_plots`` plots are drawn
    (or the timeout: the checks then say what is missing)."""
    driver.get_log("browser")
    driver.get_log("performance")  # start both logs with this page
    driver.get(page.resolve().as_uri())
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        drawn = driver.execute_script("return document.readyState === 'complete' ? "
                                      "document.querySelectorAll('figure.plot .plotly-graph-div svg.main-svg').length"
                                      " : -1")
        if drawn >= n_plots:
            break
        time.sleep(0.25)


def requests(driver) -> list[str]:
    """Every URL the page asked for since :func:`load` (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.append(msg["params"].get("request", {}).get("url") or msg["params"].get("url", ""))
    return urls


def problems(driver, expected_figures: list[str]) -> list[str]:
    """What is wrong with the loaded page: JavaScript errors, figures missing or not drawn,
    requests beyond the file, images that did not decode."""
    out = []
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    out += [f"javascript error: {m}" for m in severe]
    drawn = driver.execute_script(
        "return Array.from(document.querySelectorAll('figure.plot')).map(f => "
        "[f.dataset.figure, f.querySelector('.plotly-graph-div svg.main-svg') !== null])")
    names = {name for name, ok in drawn}
    out += [f"figure {n} is missing" for n in expected_figures if n not in names]
    out += [f"figure {n} is not drawn (no svg)" for n, ok in drawn if not ok]
    out += [f"network request: {u}" for u in requests(driver) if not u.startswith(("file:", "data:"))]
    broken = driver.execute_script("return Array.from(document.images).filter(i => !(i.complete && "
                                   "i.naturalWidth > 0)).map(i => i.alt)")
    out += [f"image did not load: {b}" for b in broken]
    return out


def table_values(driver, name: str) -> list[list[str | None]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#table-' + arguments[0] + ' tbody tr')).map(r => "
        "Array.from(r.cells).map(c => c.hasAttribute('data-value') ? c.getAttribute('data-value') : c.textContent))",
        name)


def test_the_page_in_chromium(run_dir, browser):
    page = run_dir / "report.html"
    expected = [p.name for p in taxonomy_page.build_page(run_dir).plots()]
    assert len(expected) >= 6  # three study figures and a learning curve per trained run
    load(browser, page, len(expected))
    assert problems(browser, expected) == []
    n_images = browser.execute_script("return document.querySelectorAll('.card img').length")
    assert n_images > 0
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    # the tables hold the CSV's numbers
    keys = [c.key for c in taxonomy_page.RESULT_TABLE_COLUMNS]
    shown = table_values(browser, "per_hypernym")
    csv_rows = read_csv(run_dir / "results.csv", {})
    assert [r[keys.index("f1")] for r in shown] == [r["f1"] if r["f1"] != "nan" else "-" for r in csv_rows]
    assert [r[keys.index("run_id")] for r in shown] == [r["run_id"] for r in csv_rows]
    heads = [c.key for c in taxonomy_page.HEADLINE_COLUMNS]
    want = headline_rows(read_results(run_dir / "results.csv"))
    got = table_values(browser, "headline")
    assert [float(r[heads.index("unseen")]) for r in got] == pytest.approx([w["unseen"][0] for w in want], abs=1e-12)

    # sorting: click the F1 header twice (ascending, then descending)
    f1_col = keys.index("f1")
    header = browser.find_elements("css selector", "#table-per_hypernym thead th")[f1_col]
    header.click()
    asc = [float(r[f1_col]) for r in table_values(browser, "per_hypernym") if r[f1_col] != "-"]
    assert asc == sorted(asc)
    header.click()
    desc = [float(r[f1_col]) for r in table_values(browser, "per_hypernym") if r[f1_col] != "-"]
    assert desc == sorted(desc, reverse=True)

    # the gallery filter: unseen only, then unseen and wrong
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("css selector", "select[data-key='split']")).select_by_value("unseen")
    visible = browser.execute_script("return Array.from(document.querySelectorAll('.card')).filter(c => !c.hidden)"
                                     ".map(c => c.dataset.split)")
    assert visible and set(visible) == {"unseen"}
    total = browser.execute_script("return document.querySelectorAll('.card').length")
    assert browser.find_element("css selector", ".gallery-count").text == f"{len(visible)} of {total} shown"
    assert problems(browser, expected) == []  # clicking raised no error and loaded nothing


def test_the_checks_catch_a_missing_figure_and_a_network_request(tmp_path, browser):
    fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2]))
    good = write_page(Page("ok", [Section("s", [Plot("a", fig), Plot("b", fig)])]), tmp_path / "ok.html")
    load(browser, good, 2)
    assert problems(browser, ["a", "b"]) == []
    # a figure the page should hold but does not, and one whose drawing is removed
    html = good.read_text().replace('data-figure="b"', 'data-figure="c"')
    html = re.sub(r'Plotly\.newPlot\(\s*"plot-a"', 'console.log("plot-a"', html)
    (tmp_path / "missing.html").write_text(html)
    load(browser, tmp_path / "missing.html", 2, timeout=5)
    found = problems(browser, ["a", "b"])
    assert "figure b is missing" in found and "figure a is not drawn (no svg)" in found
    # a request beyond the file (to a closed local port: nothing leaves the machine) and a JS error
    html = good.read_text().replace("<main>", '<main><img src="http://127.0.0.1:9/x.png" alt="remote">'
                                    "<script>undefinedFunction();</script>")
    (tmp_path / "remote.html").write_text(html)
    load(browser, tmp_path / "remote.html", 2, timeout=10)
    found = problems(browser, ["a", "b"])
    assert "network request: http://127.0.0.1:9/x.png" in found
    assert any(p.startswith("javascript error") and "undefinedFunction" in p for p in found)
    assert "image did not load: remote" in found


def test_the_page_rebuilds_from_the_folder_alone(run_dir, tmp_path, browser):
    """`python -m interp.report` on a copy of the folder without any checkpoint: the same tables."""
    from interp.report import main

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.safetensors", "checkpoint.pt", "report.html"))
    main([str(copy), "--no-progress"])
    expected = [p.name for p in taxonomy_page.build_page(copy).plots()]
    load(browser, copy / "report.html", len(expected))
    assert problems(browser, expected) == []
    f1 = [c.key for c in taxonomy_page.RESULT_TABLE_COLUMNS].index("f1")
    assert [r[f1] for r in table_values(browser, "per_hypernym")] == [
        r["f1"] if r["f1"] != "nan" else "-" for r in read_csv(copy / "results.csv", {})]


SAE_GEMMA = ROOT / "figures" / "out" / "sae-gemma"  # a real SAE run's tables (committed)


@pytest.fixture(scope="module")
def sae_page_dir(tmp_path_factory):
    """The SAE results page built by `python -m interp.report` from a copy of the committed run."""
    from interp.report import main

    out = tmp_path_factory.mktemp("sae") / "sae-gemma"
    shutil.copytree(SAE_GEMMA, out, ignore=shutil.ignore_patterns("report.html"))
    main([str(out), "--no-progress"])
    return out


def test_the_sae_page_in_chromium(sae_page_dir, browser):
    from interp.studies.sae import page as sae_page

    out = sae_page_dir
    expected = [p.name for p in sae_page.build_page(out).plots()]
    assert {"headline_sharing", "quality", "sharing", "latent_map", "train_curve"} <= set(expected)
    load(browser, out / "report.html", len(expected))
    assert problems(browser, expected) == []

    # the tables hold the CSV's numbers
    def column(table: str, columns: list, key: str) -> list:
        i = [c.key for c in columns].index(key)
        return [r[i] for r in table_values(browser, table)]

    summary, sharing = read_csv(out / "summary.csv"), read_csv(out / "sharing.csv")
    heads = sae_page.HEADLINE_COLUMNS
    assert [float(v) for v in column("headline", heads, "explained_variance")] == [
        r["explained_variance"] for r in summary]
    assert [float(v) for v in column("headline", heads, "l0")] == [r["l0"] for r in summary]
    assert [float(v) for v in column("headline", heads, "shared")] == [r["shared"] for r in sharing]
    assert [float(v) for v in column("headline", heads, "shuffled")] == [r["shuffled_shared_mean"] for r in sharing]
    latents = read_csv(out / "latents.csv")
    assert [float(v) for v in column("latents", sae_page.LATENT_COLUMNS, "mass")] == [r["mass"] for r in latents]
    assert [int(v) for v in column("latents", sae_page.LATENT_COLUMNS, "latent")] == [r["latent"] for r in latents]
    tokens = read_csv(out / "top_tokens.csv")
    assert [float(v) for v in column("top_tokens", sae_page.TOP_TOKEN_COLUMNS, "activation")] == [
        r["activation"] for r in tokens]
    images = read_csv(out / "top_images.csv")
    assert [float(v) for v in column("top_images", sae_page.TOP_IMAGE_COLUMNS, "activation")] == [
        r["activation"] for r in images]
    curve = read_csv(out / "train_curve.csv")
    assert [float(v) for v in column("train_curve_points", sae_page.CURVE_COLUMNS, "train_fvu")] == [
        r["train_fvu"] for r in curve]

    # sorting the latents by total activation (descending on the second click)
    mass_col = [c.key for c in sae_page.LATENT_COLUMNS].index("mass")
    header = browser.find_elements("css selector", "#table-latents thead th")[mass_col]
    header.click()
    header.click()
    desc = [float(v) for v in column("latents", sae_page.LATENT_COLUMNS, "mass")]
    assert desc == sorted(desc, reverse=True)
    assert problems(browser, expected) == []  # clicking raised no error and loaded nothing
