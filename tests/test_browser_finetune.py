"""The Fine-tune page in a real browser: adapt a run to new text, then train and try a classifier.

The server is ``test_browser.py``'s (Playwright, Debian's Chromium, ``streamlit run app.py`` on
a free port), with one small pre-trained run copied into its runs directory.
Screenshots go to ``test-artifacts/screenshots/finetune-*.png``.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
from test_browser import (
    CHROMIUM,
    FLAGS,
    SHOTS,
    go,
    server,  # noqa: F401  (the streamlit server fixture, shared)
    set_number,
    settle,
)


@pytest.fixture(scope="module")
def app(request, tiny_run):
    """The app (``test_browser``'s server) with one small pre-trained run in its runs folder."""
    url, runs_dir, _ = request.getfixturevalue("server")
    shutil.copytree(tiny_run, runs_dir / tiny_run.name)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2600})
        page.set_default_timeout(60_000)
        yield page, url, runs_dir
        browser.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"finetune-{name}.png"), full_page=True)


def wait_text(page, pattern: str, timeout: float = 240) -> None:
    """Wait for text matching ``pattern``; fail at once on an error box or an exception."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.get_by_text(re.compile(pattern)).count():
            return
        for box in ('[data-testid="stAlertContentError"]', '[data-testid="stException"]'):
            assert not page.locator(box).count(), page.locator(box).first.inner_text()
        page.wait_for_timeout(250)
    raise AssertionError(f"never saw {pattern!r}")


def test_fine_tune_a_run_then_train_and_try_a_classifier(app):
    page, url, runs_dir = app
    page.goto(url)
    page.get_by_role("heading", name="LM Lab").wait_for()
    go(page, "Fine-tune")
    # The layer table reflects the options: two blocks frozen, then the top one dropped and one added.
    set_number(page, "Freeze bottom blocks", 1)
    set_number(page, "Add new blocks", 1)
    assert page.get_by_text("frozen").count() and page.get_by_text("new").count()
    set_number(page, "Steps", 20)
    shot(page, "01-options")
    page.get_by_role("button", name="Start fine-tuning").click()
    wait_text(page, r"completed · step 20/20")
    settle(page)
    shot(page, "02-lm-completed")
    children = [p for p in runs_dir.iterdir() if "-ft-" in p.name]
    assert len(children) == 1
    assert '"parent"' in (children[0] / "config.json").read_text()

    page.get_by_text("Labeled texts (classifier)").click()
    page.get_by_text("Labeled data").wait_for()
    for _ in range(120):  # the language-model form's widgets go once the rerun has finished
        if page.get_by_label("Steps", exact=True).count() == 1:
            break
        page.wait_for_timeout(250)
    settle(page)
    set_number(page, "Steps", 20)
    page.get_by_role("button", name="Start fine-tuning").click()
    wait_text(page, r"Held-out accuracy")
    settle(page)
    assert page.get_by_text("Confusion matrix").count()
    shot(page, "03-classifier-completed")

    page.get_by_label("Text to classify").fill("The sound is superb. Highly recommended.")
    page.get_by_role("button", name="Classify").click()
    wait_text(page, r"Predicted label: (positive|negative) \(probability \d\.\d{3}\)", 120)
    shot(page, "04-classified")

    go(page, "Runs")  # the lineage: both children name the pre-trained run
    page.locator('[data-testid="stDataFrame"]').wait_for()
    assert len([p for p in runs_dir.iterdir() if (p / "config.json").is_file()]) == 3
