"""Driving the dashboard in a real browser: a Streamlit server of its own and Chromium's helpers.

Shared by the page tests and the load benchmark (:mod:`lmcore.bench.load`): Debian's
Chromium, driven by Playwright, against ``streamlit run app.py`` on a free port of
127.0.0.1 with a runs folder of its own. Imports neither Streamlit nor TensorFlow.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lmcore.jobs import queue, warmup

ROOT = Path(__file__).resolve().parents[2]  # the checkout: app.py beside lmcore/

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` on a free port, with its own runs directory and settings."""

    def __init__(self, runs_dir: Path, env: dict | None = None, args: tuple = ()):
        self.runs_dir, self.port = runs_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port)]
        cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", *args]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "LMLAB_RUNS_DIR": str(runs_dir), "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError("streamlit did not start")

    def stop(self, sig=signal.SIGTERM, jobs_too: bool = True) -> None:
        """End the server, and (unless told otherwise) the training jobs it started."""
        if jobs_too and self.runs_dir.is_dir():
            for run_id in queue.queued(self.runs_dir) + queue.active(self.runs_dir):
                queue.stop(self.runs_dir, run_id)
            warmup.stop(self.runs_dir)  # and the warm-up of its cache, if it runs
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' indicator)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000
    )


def curve_points(page) -> int:
    """How many logged steps the live loss chart shows now."""
    return page.evaluate("""() => {
        for (const p of document.querySelectorAll('.js-plotly-plot')) {
            // _fullData holds decoded arrays; the loss panel is the first subplot (axis 'x')
            for (const t of (p._fullData || [])) {
                if (t.name === 'train' && t.xaxis === 'x' && t.x) return t.x.length || 0;
            }
        }
        return 0;
    }""")


def choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def set_field(page, label: str, value) -> None:
    """Type into the one field called ``label`` (after a rerun, a replaced one may linger a moment)."""
    box = page.get_by_label(label, exact=True)
    for _ in range(20):
        if box.count() == 1:
            box.fill(str(value))
            box.press("Enter")
            settle(page)
            page.wait_for_timeout(300)
            if box.count() == 1 and box.input_value() == str(value):
                return
        page.wait_for_timeout(250)
    raise AssertionError(f"could not set {label} to {value}")
