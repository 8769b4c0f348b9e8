"""The guided tour in a real browser: every step, Back and Next, leaving it and resuming it, and
its one-click learning-rate sweep from an empty runs folder to the verdicts and a token's
reasons. Screenshots go to ``test-artifacts/screenshots-tour``."""

from __future__ import annotations

from test_browser_reliability import Server, browser, new_page  # noqa: F401 (browser)

from conftest import ROOT
from dashboard import tour
from lmcore.bench.browser import set_field, settle
from lmcore.experiments import lr_sweep

SHOTS = ROOT / "test-artifacts" / "screenshots-tour"
STEPS = 30  # per sweep run: the form's least


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def at_step(page, n: int) -> None:
    page.get_by_role("heading", name=f"{n}. {tour.TITLES[n - 1]}").wait_for()
    settle(page)


def click(page, name: str) -> None:
    page.get_by_role("button", name=name).click()
    settle(page)


def test_every_step_of_the_tour_with_leaving_resuming_and_the_sweep(browser, tmp_path):  # noqa: F811
    runs_dir = tmp_path / "runs"
    server = Server(runs_dir)
    try:
        page = new_page(browser, server.url, "tour")
        at_step(page, 1)
        assert page.get_by_role("button", name="Back").is_disabled()
        assert page.get_by_text("Unigram entropy", exact=True).count() == 1
        shot(page, "01-text")
        click(page, "Next")
        at_step(page, 2)
        assert page.locator("sub").count() > 100  # each token's id, under its chip
        click(page, "Next")
        at_step(page, 3)
        assert page.get_by_text(f"one window is {tour.BLOCK} predictions").count() == 1
        assert page.locator('[data-testid="stDataFrame"]').count() == 1  # position by position
        click(page, "Next")
        at_step(page, 4)
        assert page.get_by_text("Loss after one step").count() == 1
        shot(page, "04-step")
        assert "step=4" in page.url

        page.get_by_role("link", name="Data", exact=True).first.click()  # leave the tour
        page.get_by_role("heading", name="Data").wait_for()
        page.get_by_role("link", name="Home", exact=True).first.click()
        page.get_by_role("link", name="Resume the tour at step 4: One training step").click()
        at_step(page, 4)  # resumed where it was left

        click(page, "Next")
        at_step(page, 5)
        set_field(page, "Steps per run", STEPS)
        page.get_by_role("button", name="Run the sweep").click()
        page.get_by_text("What too large a rate really does").wait_for(timeout=600_000)
        settle(page)
        # the chart is drawn by plotly.js after the page settles: wait for its traces
        names = page.wait_for_function(
            "() => { const n = [...document.querySelectorAll('.js-plotly-plot')]"
            ".flatMap(p => (p._fullData || []).map(t => t.name)); return n.length ? n : null; }"
        ).json_value()
        for label, _ in lr_sweep.VARIANTS:  # a curve for each rate and schedule
            assert f"{label} train" in names and f"{label} validation" in names
        conclusion = page.locator('[data-testid="stAlertContentSuccess"]').inner_text()
        assert "constant 0.3 (far too large)" in conclusion and "No run overfits" in conclusion
        assert page.get_by_text("Loss at each rate and schedule").count() == 1
        shot(page, "05-sweep")
        assert len([p for p in runs_dir.iterdir() if lr_sweep.variant_of(p.name) is not None]) == len(
            lr_sweep.VARIANTS
        )

        click(page, "Next")
        at_step(page, 6)
        page.get_by_text("Probability (model)").wait_for(timeout=120_000)
        settle(page)  # the model loaded, the page's run finished: its buttons are this step's
        assert "step=6" in page.url
        assert page.get_by_role("button", name="Next").is_disabled()
        assert page.get_by_text("likeliest candidates").count() == 1
        shot(page, "06-token")
        click(page, "Back")
        at_step(page, 5)
    finally:
        server.stop()
