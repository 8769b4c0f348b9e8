"""Public mode in a real browser (issue 13): two visitors of one shared server.

Alice trains; Bob can watch her run but finds no control to stop or delete it; Alice cannot
start a second job; a wrong admin password is refused and the right one unlocks Bob's
session, which then pins and stops Alice's run; an older run removed for the disk budget is
shown as removed; no page shows the server's folders. Configured the way a deployment is,
through ``[lmlab]`` in a secrets file. Screenshots go to ``test-artifacts/screenshots-public``.
"""

from __future__ import annotations

import io
import shutil
import zipfile

from test_browser import go, settle, status_text, wait_status
from test_browser_reliability import (  # noqa: F401 (browser: the shared fixture)
    Server,
    browser,
    errors,
    followed_run,
    new_page,
    start_run,
    upload,
)

from conftest import ROOT
from lmcore import runs
from lmcore.bench.browser import set_field
from lmcore.jobs import public

SHOTS = ROOT / "test-artifacts" / "screenshots-public"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def body(page) -> str:
    return page.locator("body").inner_text()


def select_first_row(page) -> None:
    grid = page.locator('[data-testid="stDataFrame"]')
    grid.wait_for()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)
    settle(page)


def test_two_visitors_in_public_mode_own_their_runs_and_the_admin_unlocks_one_session(
    browser,  # noqa: F811
    tmp_path,
    tiny_run,
):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        '[lmlab]\npublic = true\nadmin_password = "presenter only"\n'
        "max_steps = 20000\nmax_minutes = 10\ndisk_budget_mb = 0.5\nupload_mb = 0.01\n",
        encoding="utf-8",
    )
    runs_dir = tmp_path / "runs"
    shutil.copytree(tiny_run, runs_dir / tiny_run.name)  # an older finished run, nobody's pin
    server = Server(runs_dir, env={"LMLAB_MAX_JOBS": "2"}, args=("--secrets.files", str(secrets)))
    hidden = str(tmp_path)  # the server's folders: never on a page
    try:
        alice, bob = new_page(browser, server.url), new_page(browser, server.url)
        assert "shared server in public mode" in body(alice) and hidden not in body(alice)

        # Alice trains within the caps the form shows
        start_run(alice, "alice", 20000, 8)
        wait_status(alice, r"running · step [1-9]", 120)
        assert alice.get_by_label("Steps", exact=True).get_attribute("max") == "20000"
        assert alice.get_by_text("a run trains at most 20,000 steps and 10 minutes").count()
        (alice_run,) = [p for p in runs_dir.iterdir() if "-alice-" in p.name]
        assert alice.get_by_role("button", name="Stop").count() == 1  # her own run: her control

        # ... and cannot start a second job while it trains
        alice.get_by_text("New run").first.click()
        set_field(alice, "Seed", 1338)  # a job of its own: an identical one would only follow hers
        alice.get_by_role("button", name="Start training").click()
        alert = '[data-testid="stAlertContentError"]'
        alice.locator(alert, has_text="one job at a time per visitor").wait_for()
        shot(alice, "01-alice-training-second-job-refused")
        assert hidden not in body(alice)

        # Bob watches Alice's run: no Stop for him
        go(bob, "Train")
        assert "alice" in followed_run(bob)
        wait_status(bob, r"running · step", 60)
        bob.get_by_text("Started by another visitor").first.wait_for()
        assert bob.get_by_role("button", name="Stop").count() == 0
        shot(bob, "02-bob-watches-without-controls")

        # On Runs: the older run removed for the disk budget is shown; Alice's has no controls for Bob
        go(bob, "Runs")
        bob.get_by_text("Removed to keep this server's disk budget").wait_for()
        assert tiny_run.name in body(bob) and not (runs_dir / tiny_run.name).exists()
        assert [e["name"] for e in public.evictions(runs_dir)] == [tiny_run.name]
        select_first_row(bob)
        bob.get_by_text("were started by other visitors").wait_for()
        assert bob.get_by_text("Delete", exact=True).count() == 0
        assert bob.get_by_role("button", name="Pin 1 run(s)", exact=True).count() == 0
        shot(bob, "03-bob-runs-page-no-delete")
        assert hidden not in body(bob)

        # Uploads beyond this server's size are refused, visibly
        go(bob, "Data")
        bob.get_by_text("Upload a file").click()
        settle(bob)
        upload(bob, "big.txt", b"to be or not to be\n" * 1000)  # 19 KB: over the 0.01 MB allowed
        bob.locator(alert, has_text="accepts uploads up to 0.01 MB").wait_for()
        assert not bob.get_by_text("Distinct characters").count()
        shot(bob, "04-upload-too-large")

        # A wrong admin password is refused; the right one unlocks Bob's session only
        password = bob.get_by_label("Admin password")
        password.fill("presenter")
        bob.get_by_role("button", name="Unlock").click()
        bob.locator(alert, has_text="Wrong admin password.").wait_for()
        shot(bob, "05-wrong-password")
        bob.get_by_label("Admin password").fill("presenter only")
        bob.get_by_role("button", name="Unlock").click()
        bob.get_by_text("every run can be stopped, resumed, deleted and pinned").wait_for()
        settle(bob)

        go(bob, "Runs")
        select_first_row(bob)
        bob.get_by_role("button", name="Pin 1 run(s)", exact=True).click()
        settle(bob)
        for _ in range(120):  # on a loaded machine the click's rerun may start after settle's first look
            if public.pinned(runs_dir):
                break
            bob.wait_for_timeout(250)
        assert public.pinned(runs_dir) == {alice_run.name}
        go(bob, "Train")
        bob.get_by_role("button", name="Stop").click()
        wait_status(bob, r"stopped · step", 90)
        shot(bob, "06-admin-stopped-alices-run")
        go(alice, "Train")  # a fresh view: her refused second start's message is gone
        alice.locator(alert).wait_for(state="detached")  # (a loaded machine may draw it a moment longer)
        wait_status(alice, r"stopped · step", 60)
        assert "stopped" in status_text(alice)

        # Pinned: the budget never removes it, and Alice still has no admin powers
        assert runs.checkpoint(alice_run).is_file()
        go(alice, "Runs")
        assert alice.get_by_role("button", name="Pin 1 run(s)", exact=True).count() == 0
        assert alice.get_by_label("Admin password").count() == 1
        assert not errors(alice) and not errors(bob)
    finally:
        server.stop()


def test_a_full_queue_refuses_a_visitor_and_says_what_to_do_instead(browser, tmp_path):  # noqa: F811
    env = {"LMLAB_PUBLIC": "1", "LMLAB_MAX_JOBS": "1", "LMLAB_MAX_QUEUED": "1"}
    server = Server(tmp_path / "runs", env=env)
    try:
        ann, ben, cat = (new_page(browser, server.url) for _ in range(3))
        start_run(ann, "ann", 3000, 8)  # the one training slot
        start_run(ben, "ben", 50, 4)  # the one place in the queue
        ben.get_by_text("Queued: number 1 of 1 waiting").wait_for(timeout=60_000)
        assert "LMLAB_MAX_JOBS" not in body(ben)  # a server's setting: the admin's, not a visitor's
        start_run(cat, "cat", 40, 4)
        alert = cat.locator('[data-testid="stAlertContentError"]', has_text="the queue is full")
        alert.wait_for()
        assert "Watch a run in progress" in alert.inner_text() and "come back in" in alert.inner_text()
        shot(cat, "05-queue-full")
        assert not [p for p in (tmp_path / "runs").iterdir() if "-cat-" in p.name]

        # cat, turned away, tries to bring a run of her own: a hostile archive is refused
        go(cat, "Runs")
        cat.get_by_text("Upload a run").first.click()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("20260101-000000-tiny-0badc0de/../../escaped.txt", "out of the runs folder")
        upload(cat, "class-run.zip", buffer.getvalue())
        refused = cat.locator('[data-testid="stAlertContentError"]', has_text="was not imported")
        refused.wait_for()
        assert "unsafe file name" in refused.inner_text()
        shot(cat, "06-upload-refused")
        assert not list(tmp_path.rglob("escaped.txt"))

        ann.get_by_role("button", name="Stop").click()  # the slot frees, ben's run starts
        wait_status(ben, r"completed · step 50/50", 240)
    finally:
        server.stop()
