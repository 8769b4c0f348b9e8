"""The dashboard in a real browser: Playwright driving Debian's Chromium against `streamlit run app.py`.

A new user's path: open Home, visit every page, upload a text file on Data, train a tiny run
on Train and watch its curve gain points until it completes, stop a second run midway, and
generate text on Generate. Screenshots of each page go to ``test-artifacts/screenshots``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and the ``playwright`` package; it is
skipped without them, unless ``LMLAB_REQUIRE_BROWSER=1`` (as in CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT
from lmcore.bench.browser import CHROMIUM, FLAGS, Server, choose, curve_points, settle

SHOTS = ROOT / "test-artifacts" / "screenshots"


def _require_browser():
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("LMLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    runs_dir = tmp_path_factory.mktemp("browser-runs")
    started = time.perf_counter()
    app = Server(runs_dir)
    yield app.url, runs_dir, started
    app.stop(jobs_too=False)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 2400})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def go(page, name: str) -> None:
    page.get_by_role("link", name=name, exact=True).first.click()
    page.get_by_role("heading", name=name, exact=True).first.wait_for()
    settle(page)
    assert not page.locator('[data-testid="stException"]').count(), f"exception on {name}"
    assert not page.get_by_text("DeltaGenerator").count(), f"Streamlit magic printed an object on {name}"


def text_of(page, selector: str) -> str:
    """The first such element's text, or "" if there is none (or it went in a rerun meanwhile)."""
    from playwright.sync_api import Error as PlaywrightError

    found = page.locator(selector)
    try:
        return found.first.inner_text(timeout=1000) if found.count() else ""
    except PlaywrightError:  # replaced between the count and the read: a refresh, not a failure
        return ""


def status_text(page) -> str:
    return text_of(page, '[data-testid="stProgress"]')


def phase_text(page) -> str | None:
    """What a starting run's live view says it is doing ("Starting: …" or "running · …"), if anything."""
    for box in ('[data-testid="stAlert"]', '[data-testid="stProgress"]'):
        text = text_of(page, box)
        if m := re.search(r"Starting: (.+?)…|running · ([^·]+?)… · step", text):
            return m.group(1) or m.group(2)
    return None


def wait_status(page, pattern: str, timeout: float = 240) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = status_text(page)
        if re.search(pattern, text):
            return text
        failed = page.locator('[data-testid="stAlertContentError"]')
        assert not failed.count(), failed.first.inner_text()
        page.wait_for_timeout(250)
    raise AssertionError(f"status never matched {pattern!r}; last: {status_text(page)!r}")


def first_step(page) -> int | None:
    """The first step the live loss chart draws."""
    return page.evaluate("""() => {
        for (const p of document.querySelectorAll('.js-plotly-plot')) {
            for (const t of (p._fullData || [])) if (t.name === 'train' && t.x) return t.x[0];
        }
        return null;
    }""")


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settle(page)


def test_a_new_users_path_through_the_app(server, page, small_text, tmp_path):
    url, runs_dir, started = server
    page.goto(url)
    page.get_by_role("heading", name="LM Lab").wait_for()
    print(f"\nfirst page rendered {time.perf_counter() - started:.1f} s after the server process started")
    shot(page, "01-home")

    go(page, "Math")
    page.get_by_text("2.0000 bits", exact=True).wait_for()
    shot(page, "02-math")

    go(page, "Data")
    page.get_by_text("Upload a file").click()
    settle(page)
    upload = tmp_path / "my text.txt"
    upload.write_text(small_text, encoding="utf-8")
    page.locator('input[type="file"]').set_input_files(str(upload))
    page.get_by_text("Distinct characters").wait_for()
    settle(page)
    assert page.get_by_text(f"{len(small_text):,}").count()
    shot(page, "03-data-upload")

    go(page, "Train")
    corpus_box = page.get_by_role("combobox", name="Corpus (choose others on the Data page)")
    assert corpus_box.input_value() == "my_text.txt"  # the upload chosen on Data, by its name
    choose(page, "Model", "tiny")
    set_number(page, "Steps", 600)
    page.get_by_role("button", name="Start training").click()
    seen, phases = set(), []  # what the live view said, in order, until the first point
    deadline = time.time() + 240
    while time.time() < deadline and "completed" not in status_text(page):
        if not seen - {0} and (phase := phase_text(page)) and phase not in phases:
            phases.append(phase)
            if len(phases) == 2:
                shot(page, "04a-train-starting")  # the first seconds after the click
        seen.add(curve_points(page))
        page.wait_for_timeout(250)
    # No dead air: until the curve's first point the view says what the job is doing.
    assert len(phases) >= 2, f"start-up phases seen: {phases}"
    print(f"\nstart-up phases shown: {phases}")
    wait_status(page, r"completed · step 600/600")
    settle(page)
    for _ in range(40):  # the final redraw may land just after the status line
        seen.add(curve_points(page))
        if 600 in seen:
            break
        page.wait_for_timeout(250)
    # A point a step (each step's loss comes with its interval's record), growing as it trains.
    assert 600 in seen and len(seen - {0}) >= 2, f"the curve did not visibly grow: {sorted(seen)}"
    page.get_by_text("Sample at step 600").wait_for()
    shot(page, "04-train-completed")

    page.get_by_text("New run").first.click()
    set_number(page, "Steps", 100000)
    page.get_by_role("button", name="Start training").click()
    text = wait_status(page, r"running · step [1-9]", 120)
    shot(page, "05-train-running")
    # A window of steps outlives the view's refreshes (Plotly's own zoom does not, in Streamlit 1.67)
    box = page.locator('[data-testid="stSlider"]').filter(has_text="Steps shown")
    window = box.get_by_role("slider")
    window.first.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")  # the window starts a few steps in
    settle(page)
    start = int(box.locator('[data-testid="stSliderThumbValue"]').first.inner_text())  # not always 5: a
    # refresh can take a key press
    n = curve_points(page)
    for _ in range(120):
        if curve_points(page) > n:  # a refresh with new records
            break
        page.wait_for_timeout(250)
    assert start > 0 and curve_points(page) > n and first_step(page) == start
    # Pause holds the view still while the run trains on; switched off, it follows again
    page.get_by_text("Pause view").click()
    page.get_by_text("The view is paused").wait_for()
    settle(page)  # the paused view drawn in full, not the caption ahead of the chart
    held = curve_points(page)
    page.wait_for_timeout(3000)
    assert curve_points(page) == held
    shot(page, "05b-train-paused")
    page.get_by_text("Pause view").click()
    for _ in range(120):
        if curve_points(page) > held:
            break
        page.wait_for_timeout(250)
    settle(page)  # the paused view's Stop, drawn outside the live part, is gone once the run ends
    assert curve_points(page) > held and not page.get_by_text("The view is paused").count()
    page.get_by_role("button", name="Stop").click()
    text = wait_status(page, r"stopped · step", 60)
    stopped_at = int(re.search(r"step (\d+)/", text).group(1))
    assert 0 < stopped_at < 100000
    shot(page, "06-train-stopped")

    go(page, "Generate")
    page.get_by_role("combobox", name="Run").first.click()
    page.get_by_role("option", name=re.compile(r"\(completed")).click()
    settle(page)
    set_number(page, "Top-k (0 = off)", 3)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Why this token?").wait_for(timeout=120_000)
    settle(page)
    for pane in ("Sampled", "Greedy"):  # side by side, each with its speed
        page.get_by_text(re.compile(pane + r": 200 tokens at [\d,]+ tokens/s")).wait_for()
    page.get_by_text("grey: removed by the filters (7)").wait_for()  # top-k 3 of the 10 shown
    page.get_by_text("Layer 1, head 1:").wait_for()
    choose(page, "Head", "2")
    page.get_by_text("Layer 1, head 2:").wait_for()
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, "07-generate")

    go(page, "Math")  # with a trained run chosen, the model-based sections appear
    page.get_by_role("combobox", name="Compare with a trained run (loads its model)").click()
    page.get_by_role("option", name=re.compile(r"\(completed")).click()
    page.get_by_text("Nearest neighbours of").wait_for(timeout=120_000)
    settle(page)
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, "08-math-with-run")

    go(page, "Runs")
    grid = page.locator('[data-testid="stDataFrame"]')
    grid.wait_for()
    settle(page)
    box = grid.bounding_box()
    for row in (1, 2):  # tick both rows' selection boxes (the grid is drawn on a canvas)
        page.mouse.click(box["x"] + 14, box["y"] + 35 * row + 17)
        settle(page)
    page.get_by_text("Settings that differ").wait_for()
    page.get_by_role("button", name="Download metrics (CSV)").wait_for()
    # The comparison's report: one file that draws its curves with the network off
    with page.expect_download() as got:
        page.get_by_role("button", name="Download report (HTML)").click()
    saved = tmp_path / "report.html"
    got.value.save_as(saved)
    offline = page.context.browser.new_context(offline=True)
    try:
        view = offline.new_page()
        view.goto(saved.as_uri())
        view.locator(".js-plotly-plot").first.wait_for()
        names = view.evaluate("() => document.querySelector('.js-plotly-plot')._fullData.map(t => t.name)")
        assert sum(name.endswith(" train") for name in names) == 2, names  # both runs' curves
        assert (
            view.get_by_text("Settings that differ").count() and view.get_by_text("2 runs compared").count()
        )
        view.screenshot(path=str(SHOTS / "09b-report-offline.png"), full_page=True)
    finally:
        offline.close()
    assert not page.get_by_text("DeltaGenerator").count()
    shot(page, "09-runs")
    go(page, "Data")  # coming back: the page still shows the upload, not the default corpus
    page.get_by_text("Using your earlier upload, my text.txt").wait_for()
    assert page.get_by_text(f"{len(small_text):,}").count()

    statuses = sorted(p.read_text() for p in runs_dir.glob("*/status.json"))
    assert len(statuses) == 2
    assert any('"completed"' in s for s in statuses) and any('"stopped"' in s for s in statuses)
