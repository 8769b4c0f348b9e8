"""A class on one server: many visitors arrive within a minute and press the quick demo.

    python -m lmcore.bench.classroom [--sessions 30] [--within 60] [--nice] [--env K=V ...]

Starts ``streamlit run app.py`` in public mode with an empty runs folder, opens
``--sessions`` browser sessions on Home (each its own context: its own Streamlit session), then
has them press "Start the quick demo" one after another, spread evenly over ``--within``
seconds. It then waits until every visitor has landed on Generate with a first text, and
reports: how many runs were trained (the job layer shares one identical job), when each ended,
when the visitors reached Generate and saw their first text (p50 and max seconds after the
first click, and after their own click: each page notes these by its own clock, so a slow
poll of thirty pages does not bunch them up), what the pages showed
(errors other than a clear refusal, refusals, exceptions), and the server's and the jobs'
resident memory and CPU, sampled from /proc every half second. The visitors' browsers run on
the same cores here (a class's run on their own laptops): ``browsers_cores`` says how many
cores they used on average from the first click on, and ``--nice`` gives them the lowest
priority, so that they take only what the server and its training leave.
Prints one JSON object; loops are bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from lmcore import runs
from lmcore.bench.browser import CHROMIUM, FLAGS, Server
from lmcore.bench.load import Sampler, job_pids, memory_mb, percentile

REFUSALS = ("the queue is full", "one job at a time")  # what a clear refusal says


class Memory(threading.Thread):
    """Peak resident MB of the server, of its jobs together, and of both, every half second."""

    def __init__(self, server_pid: int, runs_dir: Path):
        super().__init__(daemon=True)
        self.server_pid, self.runs_dir, self.running = server_pid, runs_dir, True
        self.peak = {"server": 0.0, "jobs": 0.0, "total": 0.0}

    def run(self):
        while self.running:
            time.sleep(0.5)
            server = resident(self.server_pid)
            jobs = sum(resident(pid) for pid in job_pids(self.runs_dir))
            for key, value in (("server", server), ("jobs", jobs), ("total", server + jobs)):
                self.peak[key] = max(self.peak[key], value)


def resident(pid: int) -> float:
    """A process's resident MB; 0 for one that has ended (a job between listing and reading)."""
    try:
        return memory_mb(pid).get("VmRSS", 0.0)
    except OSError:
        return 0.0


def shown(page, testid: str) -> list[str]:
    return page.locator(f'[data-testid="{testid}"]').all_inner_texts()


# Each page notes, by its own clock, when it reached Generate and when its first text was there
# (the app changes page without reloading the document, so this watcher lasts the visit).
WATCH = """setInterval(() => {
  if (!location.pathname.endsWith('/generate') || !document.body) return;
  window.__onGenerate = window.__onGenerate || Date.now();
  if (!window.__text && document.body.textContent.includes('tokens/s')) window.__text = Date.now();
}, 500);"""


def open_home(browser, url: str):
    """A visitor's own session on Home, the demo's button drawn."""
    context = browser.new_context(viewport={"width": 1300, "height": 1600})
    context.add_init_script(WATCH)
    page = context.new_page()
    page.set_default_timeout(180_000)
    page.goto(url)
    page.get_by_role("button", name="Start the quick demo").wait_for()
    return page


def chromium() -> dict[int, list[str]]:
    """This machine's Chromium processes (the visitors' browsers): pid -> its /proc stat fields."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().split(") ", 1)
        except (OSError, ValueError):
            continue
        if comm.endswith("(chromium"):
            found[int(stat.parent.name)] = rest.split()
    return found


def browser_cpu_seconds() -> float:
    """CPU seconds the browsers have used so far (utime + stime)."""
    return sum(int(f[11]) + int(f[12]) for f in chromium().values()) / os.sysconf("SC_CLK_TCK")


def nice_browsers() -> None:
    """Give the browsers the lowest priority (their new processes inherit it): a class's
    browsers run on their own laptops, so here they take only what the server leaves."""
    for pid in chromium():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)


def after(marks, start: float) -> dict:
    """p50 and max of the page-clock ``marks`` (ms; None: not yet) after ``start`` (ms), in s."""
    got = sorted((m - start) / 1000 for m in marks if m)
    return {"p50": round(percentile(got, 50), 1), "max": round(got[-1], 1)} if got else {}


def run_class(args) -> dict:
    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp(prefix="lmlab-class-"))
    server = Server(runs_dir, env={"LMLAB_PUBLIC": "1", **dict(kv.split("=", 1) for kv in args.env)})
    cpu, memory = Sampler(server.proc.pid), Memory(server.proc.pid, runs_dir)
    cpu.start()
    memory.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            if args.nice:
                nice_browsers()
            visitors = [open_home(browser, server.url) for _ in range(args.sessions)]
            first, clicks, browsers = time.perf_counter(), [], browser_cpu_seconds()
            for n, page in enumerate(visitors):  # the clicks, spread evenly over --within seconds
                time.sleep(max(0.0, first + n * args.within / args.sessions - time.perf_counter()))
                clicks.append(page.evaluate("Date.now()"))
                page.get_by_role("button", name="Start the quick demo").click()
            marks = []
            while time.perf_counter() - first < args.timeout:
                marks = [
                    page.evaluate("({on: window.__onGenerate, text: window.__text})") for page in visitors
                ]
                if all(m.get("text") for m in marks):
                    break
                time.sleep(2.0)
            browsers = (browser_cpu_seconds() - browsers) / (time.perf_counter() - first)
            if args.screenshot:
                visitors[-1].screenshot(path=args.screenshot, full_page=True)
            alerts = [a for page in visitors for a in shown(page, "stAlertContentError")]
            exceptions = sum(len(shown(page, "stException")) for page in visitors)
            browser.close()
    finally:
        cpu.running = memory.running = False
        server.stop()
    return report(args, runs_dir, clicks, marks, alerts, exceptions) | {
        "peak_rss_mb": {k: round(v) for k, v in memory.peak.items()},
        "server_cpu": cpu.summary(),
        "browsers_cores": round(browsers, 2),
        "browsers_niced": args.nice,  # the visitors' browsers, on the same cores here
    }


def report(args, runs_dir: Path, clicks: list[float], marks: list[dict], alerts: list[str], exceptions: int):
    start = min(clicks)  # ms; the run's status says when it ended by the same host's clock
    trained = [p for p in runs_dir.iterdir() if p.is_dir() and (p / runs.STATUS).is_file()]
    own = [m["text"] - c + start if m.get("text") else None for m, c in zip(marks, clicks, strict=True)]
    return {
        "sessions": args.sessions,
        "arrivals_within_s": args.within,
        "runs_trained": len(trained),
        "run_ended_s": [round(runs.read_status(p).get("updated", 0) - start / 1000, 1) for p in trained],
        "visitors_with_text": f"{sum(bool(m.get('text')) for m in marks)}/{len(clicks)}",
        "on_generate_s": after([m.get("on") for m in marks], start),
        "first_text_s": after([m.get("text") for m in marks], start),
        "own_click_to_text_s": after(own, start),
        "refusals": sum(any(r in a for r in REFUSALS) for a in alerts),
        "other_errors": [a for a in alerts if not any(r in a for r in REFUSALS)],
        "exceptions": exceptions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--within", type=float, default=60, help="seconds over which the visitors arrive")
    parser.add_argument("--timeout", type=float, default=600, help="seconds after the first click to give up")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server and its jobs")
    parser.add_argument(
        "--nice", action="store_true", help="run the browsers at the lowest priority, as if on other machines"
    )
    parser.add_argument("--screenshot", default="", help="a PNG of the last visitor's page at the end")
    args = parser.parse_args()
    if args.sessions < 1 or args.within < 0:
        parser.error("--sessions must be at least 1 and --within at least 0")
    print(json.dumps(run_class(args)))


if __name__ == "__main__":
    main()
