"""Home's quick demo and the links that reproduce a setup, in a real browser ("Demo-ready").

The demo, on a fresh public server.
From an empty runs folder: Home offers the demo and no run; one click trains it (within the
server's step cap) while its curve gains points on Home, and a second visitor who presses it
too follows that same run instead of training it again; it lands on Generate with the demo's
run chosen and a first text written; back on Home the finished demo stays, and a second
visitor's Home shows that run's curve and sample instead of zeros. The links: a Train form's
address, opened in a new browser, shows the same form; a hostile address is ignored with a
notice. Screenshots go to ``test-artifacts/screenshots-demo``.
"""

from __future__ import annotations

from test_browser import settle, text_of
from test_browser_reliability import Server, browser, followed_run, new_page  # noqa: F401 (browser)

from conftest import ROOT
from lmcore import runs
from lmcore.bench.browser import curve_points, set_field

SHOTS = ROOT / "test-artifacts" / "screenshots-demo"
CAP = 60  # the server's step cap: the demo trains this many steps, not its 300


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_curve(page, least: int, timeout: float = 60_000) -> int:
    """Wait until the loss chart draws at least ``least`` steps of training; how many it draws."""
    page.wait_for_function(
        "n => [...document.querySelectorAll('.js-plotly-plot')].some(p => (p._fullData || [])"
        ".some(t => t.name === 'train' && t.x && t.x.length >= n))",
        arg=least,
        timeout=timeout,
    )
    return curve_points(page)


def test_the_quick_demo_trains_on_home_and_lands_on_generate_with_a_text(browser, tmp_path):  # noqa: F811
    runs_dir = tmp_path / "runs"
    server = Server(runs_dir, env={"LMLAB_PUBLIC": "1", "LMLAB_MAX_STEPS": str(CAP)})
    try:
        page = new_page(browser, server.url)
        assert "On this server" not in page.locator("body").inner_text()  # no run yet: nothing to show
        assert page.get_by_text(f"modern-nano, {CAP} steps").count() == 1  # the cap, said before the click
        shot(page, "01-home-empty")
        page.get_by_role("button", name="Start the quick demo").click()
        joiner = new_page(browser, server.url)  # a second visitor presses it too: one run, two watchers
        joiner.get_by_role("button", name="Start the quick demo").click()
        joiner.get_by_text("is already on this server").wait_for()
        wait_curve(page, 1, timeout=240_000)  # the curve moves on Home itself, before Generate opens
        shot(page, "02-home-training")
        shot(joiner, "02b-home-joined")

        page.wait_for_url("**/generate**", timeout=240_000)  # completed: on to Generate
        page.get_by_text("tokens/s").first.wait_for(timeout=120_000)  # a first text, unasked
        settle(page)
        (run_id,) = [p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        assert "quick-demo" in run_id and runs.read_status(runs_dir / run_id)["step"] == CAP
        assert followed_run(page).startswith(run_id)  # the demo's run is the one chosen
        joiner.wait_for_url("**/generate**", timeout=120_000)  # the joiner lands there with it too
        joiner.get_by_text("tokens/s").first.wait_for(timeout=120_000)
        assert followed_run(joiner).startswith(run_id)
        assert any(
            "tokens at" in c for c in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
        )
        assert len(text_of(page, '[data-testid="stText"]')) > len("The ")  # the prompt and its continuation
        shot(page, "03-generate")

        page.get_by_role("link", name="Home", exact=True).first.click()  # back: the finished demo stays
        page.get_by_role("button", name="Generate with it").wait_for()
        assert wait_curve(page, CAP) == CAP

        other = new_page(browser, server.url)  # a second visitor: the newest run, not zeros
        other.get_by_text(f"On this server, the newest run: {run_id}").wait_for()
        assert wait_curve(other, CAP) == CAP and other.get_by_text(f"Sample at step {CAP}").count() == 1
        shot(other, "04-home-second-visitor")
    finally:
        server.stop()


def test_a_train_link_opened_in_a_new_browser_shows_the_same_form(browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    server = Server(tmp_path / "runs")
    try:
        page = new_page(browser, server.url, "train")
        set_field(page, "Steps", 250)
        set_field(page, "Seed", 42)
        page.wait_for_url("**seed=42**")
        link = page.url
        assert "steps=250" in link
        other = new_page(
            browser, server.url, link.removeprefix(server.url + "/")
        )  # its own cookies: a new session
        # A new session's first view can be drawn before the run that restored the link (seen:
        # 700 for a moment, then 250): what counts is what the page settles on.
        expect(other.get_by_label("Steps", exact=True)).to_have_value("250", timeout=20_000)
        expect(other.get_by_label("Seed", exact=True)).to_have_value("42", timeout=20_000)
        assert not other.get_by_text("Ignored from the link").count()

        hostile = new_page(
            browser, server.url, "train?steps=abc&corpus=..%2F..%2Fetc%2Fpasswd&%3Cb%3Ex%3C%2Fb%3E=1"
        )
        warning = hostile.get_by_text("Ignored from the link").inner_text()
        assert "steps" in warning and "corpus" in warning and "<b>x</b>" in warning  # shown, not rendered
        assert not hostile.locator('[data-testid="stException"]').count()
        expect(hostile.get_by_label("Steps", exact=True)).to_have_value("700")  # the form's own default
        shot(hostile, "05-hostile-link")
    finally:
        server.stop()
