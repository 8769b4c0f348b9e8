"""Load measurements of the dashboard in a real browser (issue 6, cases 13 and 14).

    python -m lmcore.bench.load follow [--sessions 8] [--watch 60] [--seconds 120] [--jobs 2]  # followers
    python -m lmcore.bench.load cycles [--cycles 50]                    # train/generate cycles, one session
    python -m lmcore.bench.load overhead [--rounds 3] [--steps 400]     # live curves' cost to training speed
    python -m lmcore.bench.load memory [--steps 1000] [--env K=V ...]   # peak memory of one default run
    python -m lmcore.bench.load first-point [--read 8]                  # click to the curve's first point

``follow`` starts ``streamlit run app.py`` with ``--jobs`` training slots (two by default, or one
as on a small host), launches that many runs through
``lmcore.jobs.queue`` (the same child processes the Train page starts), opens ``--sessions`` browser
sessions that all follow the first run on the Train page, lets them only follow for ``--watch``
seconds (the followed run's tokens/s meanwhile is the training's speed beside that many
followers; with ``--sessions 0``, beside none), and then, for ``--seconds``, reloads them one
after another, timing each page load until the run's progress bar and curves are drawn. It
reports the p50/p95/max load time, whether every session's curve grew, the server's CPU and
resident memory (sampled from /proc), and the runs' training speed.

``cycles`` uses one session to train a tiny run on the Train page and generate text from it on
the Generate page, ``--cycles`` times, and reports the server's resident memory after each.

``overhead`` (issue 8) trains the same ``nano`` run ``--rounds`` times each way, alternating the
order: from the command line with nobody watching, and launched through ``lmcore.jobs.queue`` (the
child the Train page starts) while one browser session follows it on the Train page, its live
curves refreshing, until it ends. It reports each leg's median logged tokens/s (the first,
compiling interval left out) and the dashboard's cost, 1 - dashboard / command line, per round
and over all rounds.

``memory`` (issue 13) starts the Train page's default run (``nano`` on the Python docs) from a
browser session and, every quarter second until it ends, reads from /proc the server's and the
job's processes' (supervisor and trainer) resident memory, its private part (RssAnon: what the
kernel cannot reclaim) and their proportional share (Pss: shared library pages counted once).
It reports each part's peak and the peak of their sum, the host's figure for a deployment.

All four print one JSON object at the end. They use Debian's Chromium and Playwright, like
the page tests, whose helpers they share (:mod:`lmcore.bench.browser`). Loops are bounded by their arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from lmcore import runs
from lmcore.bench.browser import CHROMIUM, FLAGS, ROOT, Server, choose, curve_points, set_field, settle
from lmcore.jobs import queue, specs, warmup
from lmcore.nn.config import DataConfig, make_train_config


def train_spec(model: str, **train) -> specs.TrainSpec:
    """A job on the Python docs, as the Train page hands one to the queue."""
    return specs.TrainSpec(model, DataConfig(source="builtin:python-docs"), make_train_config(model, **train))


class Sampler(threading.Thread):
    """CPU (% of one core) and resident memory (MB) of one process, every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.period, self.samples, self.running = pid, period, [], True
        self.tick = os.sysconf("SC_CLK_TCK")

    def _read(self) -> tuple[float, float]:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime, seconds
        with open(f"/proc/{self.pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        return cpu, rss

    def run(self):
        last_cpu, last_t = self._read()[0], time.perf_counter()
        while self.running:
            time.sleep(self.period)
            try:
                cpu, rss = self._read()
            except (OSError, StopIteration):
                return
            now = time.perf_counter()
            self.samples.append((100 * (cpu - last_cpu) / (now - last_t), rss))
            last_cpu, last_t = cpu, now

    def summary(self) -> dict:
        cpu = [c for c, _ in self.samples]
        rss = [r for _, r in self.samples]
        return {
            "cpu_mean_pct": round(statistics.mean(cpu), 1),
            "cpu_p95_pct": round(percentile(cpu, 95), 1),
            "rss_start_mb": round(rss[0]),
            "rss_max_mb": round(max(rss)),
            "rss_end_mb": round(rss[-1]),
        }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def open_follower(context, url: str, run_id: str):
    """A session on the Train page following ``run_id``; returns (page, seconds to draw it)."""
    t0 = time.perf_counter()
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/train")
    follow(page, run_id)
    return page, time.perf_counter() - t0


def follow(page, run_id: str) -> None:
    box = page.get_by_role("combobox", name="Run", exact=True).first
    box.wait_for()
    if box.input_value() != run_id:
        box.click()
        page.get_by_role("option", name=run_id, exact=True).click()
    page.locator('[data-testid="stProgress"]').first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()


def watch(run_dir: Path, seconds: float, page=None) -> float | None:
    """Wait ``seconds`` while the sessions only follow (their views refresh themselves); the
    median tokens/s the run logged meanwhile (None: no record in that time)."""

    def logged() -> list[dict]:
        return runs.read_jsonl(run_dir / "metrics.jsonl")

    start = max((m.get("time", 0) for m in logged()), default=0)
    if page is not None:
        page.wait_for_timeout(seconds * 1000)  # Playwright's own wait keeps its pages served
    else:
        time.sleep(seconds)
    rates = [m["tokens_per_s"] for m in logged() if "tokens_per_s" in m and m.get("time", 0) > start]
    return round(statistics.median(rates)) if rates else None


def _follow_and_reload(browser, url: str, run_id: str, args, loads: list, grown: list) -> int:
    """``args.sessions`` sessions follow ``run_id``; reload them in turn for ``args.seconds``,
    timing each load into ``loads``; ``grown`` gets whether each session's curve grew.
    Returns the number of exceptions the pages show."""
    contexts = [browser.new_context(viewport={"width": 1300, "height": 1800}) for _ in range(args.sessions)]
    pages = []
    for context in contexts:
        page, seconds = open_follower(context, url, run_id)
        pages.append(page)
        loads.append(seconds)
    first_points = [curve_points(page) for page in pages]
    args.watched = watch(args.runs_dir / run_id, args.watch, pages[0])
    deadline = time.time() + args.seconds
    n = 0
    while time.time() < deadline:  # reload the sessions in turn; the others keep polling
        page = pages[n % len(pages)]
        t0 = time.perf_counter()
        page.reload()
        follow(page, run_id)
        loads.append(time.perf_counter() - t0)
        n += 1
    for page, before in zip(pages, first_points, strict=True):
        page.wait_for_timeout(1500)
        grown.append(curve_points(page) > before)
    return sum(page.locator('[data-testid="stException"]').count() for page in pages)


def bench_follow(args) -> dict:
    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp(prefix="lmlab-load-"))
    os.environ["LMLAB_MAX_JOBS"] = str(args.jobs)  # for the jobs launched here and by the server
    server = Server(runs_dir, env={"LMLAB_MAX_JOBS": str(args.jobs)})
    url = server.url
    spec = train_spec(args.model, steps=100_000, log_every=10, sample_length=50)
    ids = [queue.launch(runs_dir, spec, name, args.model) for name in ("followed", "other")[: args.jobs]]
    sampler = Sampler(server.proc.pid)
    loads, grown = [], []
    try:
        while not all((runs_dir / i / "metrics.jsonl").is_file() for i in ids):
            time.sleep(0.5)
        sampler.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            args.runs_dir = runs_dir
            if args.sessions:
                exceptions = _follow_and_reload(browser, url, ids[0], args, loads, grown)
            else:  # nobody watches: the training speed to compare with
                exceptions, args.watched = 0, watch(runs_dir / ids[0], args.watch)
            browser.close()
    finally:
        sampler.running = False
        for run_id in ids:
            queue.stop(runs_dir, run_id)
        server.stop(jobs_too=False)
    speed = {}
    for run_id in ids:
        rates = [
            m["tokens_per_s"]
            for m in runs.read_jsonl(runs_dir / run_id / "metrics.jsonl")
            if "tokens_per_s" in m
        ]
        speed[run_id] = round(statistics.median(rates)) if rates else None
    return {
        "sessions": args.sessions,
        "seconds": args.seconds,
        "model": args.model,
        "jobs": args.jobs,
        "page_loads": len(loads),
        "load_p50_s": round(percentile(loads, 50), 2) if loads else None,
        "load_p95_s": round(percentile(loads, 95), 2) if loads else None,
        "load_max_s": round(max(loads), 2) if loads else None,
        "curves_grew": f"{sum(grown)}/{len(grown)}",
        "exceptions": exceptions,
        "server": sampler.summary(),
        "training_tokens_per_s_median": speed,
        "followed_tokens_per_s_while_only_following": args.watched,
    }


def median_speed(run_dir: Path) -> float:
    """Median logged tokens/s of a finished run, its first (compiling) interval left out."""
    rates = [m["tokens_per_s"] for m in runs.read_jsonl(run_dir / "metrics.jsonl") if "tokens_per_s" in m][1:]
    return statistics.median(rates)


def wait_finished(run_dir: Path, page=None) -> None:
    while runs.read_status(run_dir).get("status") == "running":
        if page is not None:
            page.wait_for_timeout(500)  # the session keeps polling and redrawing meanwhile
        else:
            time.sleep(0.5)


def bench_overhead(args) -> dict:
    """Training speed from the command line and followed in the dashboard, alternated."""
    import subprocess

    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp(prefix="lmlab-overhead-"))
    train = ["--corpus", "builtin:python-docs", "--model", "nano", "--steps", str(args.steps), "--seed", "1"]
    server = Server(runs_dir)
    legs = {"cli": [], "dashboard": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            for r in range(args.rounds):
                for how in ("cli", "dashboard") if r % 2 == 0 else ("dashboard", "cli"):
                    if how == "cli":
                        run_id = runs.new_run_id("nano", "cli")
                        cmd = [sys.executable, "-m", "lmcore", "train", *train, "--run-id", run_id]
                        env = {**os.environ, "LMLAB_RUNS_DIR": str(runs_dir)}
                        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
                    else:
                        run_id = queue.launch(
                            runs_dir, train_spec("nano", steps=args.steps, seed=1), "dashboard", "nano"
                        )
                        while not (runs_dir / run_id / "metrics.jsonl").is_file():
                            queue.dispatch(runs_dir)  # as a polling page does, if the last job still exits
                            time.sleep(0.2)
                        context = browser.new_context(viewport={"width": 1300, "height": 1800})
                        page, _ = open_follower(context, server.url, run_id)
                        wait_finished(runs_dir / run_id, page)
                        context.close()
                    wait_finished(runs_dir / run_id)
                    legs[how].append(median_speed(runs_dir / run_id))
            browser.close()
    finally:
        server.stop()
    cost = [1 - d / c for c, d in zip(legs["cli"], legs["dashboard"], strict=True)]
    return {
        "model": "nano",
        "steps": args.steps,
        "tokens_per_s": {how: [round(v) for v in values] for how, values in legs.items()},
        "cost_per_round": [round(c, 4) for c in cost],
        "cost": round(1 - statistics.mean(legs["dashboard"]) / statistics.mean(legs["cli"]), 4),
    }


def go_to(page, name: str) -> None:
    """Open page ``name`` from the sidebar, clicking again if a rerun swallowed the click."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        page.get_by_role("link", name=name, exact=True).first.click()
        try:
            page.get_by_role("heading", name=name, exact=True).first.wait_for(timeout=30_000)
            settle(page)
            return
        except PlaywrightTimeout:
            continue
    raise RuntimeError(f"could not open the {name} page")


def bench_cycles(args) -> dict:
    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp(prefix="lmlab-cycles-"))
    server = Server(runs_dir)
    url = server.url
    sampler = Sampler(server.proc.pid, period=1.0)
    sampler.start()
    memory, seconds = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1800})
            page.set_default_timeout(180_000)
            page.goto(url)
            settle(page)
            stop_at = time.time() + 60 * args.minutes
            for cycle in range(args.cycles):  # one session: moving between pages, never reloading
                if time.time() > stop_at:
                    print(f"stopping after {cycle} cycles: the {args.minutes}-minute limit", flush=True)
                    break
                t0 = time.perf_counter()
                go_to(page, "Train")
                if cycle:  # the form folds away while a run is followed
                    page.get_by_text("New run").first.click()
                    settle(page)
                choose(page, "Model", "tiny")
                set_field(page, "Steps", 20)
                page.get_by_role("button", name="Start training").click()
                deadline = time.time() + 300
                while time.time() < deadline:  # this cycle's run, not the one shown before it
                    done = [r for r in runs.list_runs(runs_dir) if r["status"] == "completed"]
                    if len(done) == cycle + 1:
                        break
                    time.sleep(0.5)
                page.get_by_text(re.compile(r"completed · step 20/20")).wait_for()
                go_to(page, "Generate")
                set_field(page, "Length (tokens)", 50)
                page.get_by_role("button", name="Generate").click()
                page.get_by_text("tokens/s").first.wait_for()
                settle(page)
                seconds.append(time.perf_counter() - t0)
                memory.append(round(sampler.samples[-1][1]) if sampler.samples else None)
                print(f"cycle {cycle + 1}: server RSS {memory[-1]} MB, {seconds[-1]:.1f} s", flush=True)
            browser.close()
    finally:
        sampler.running = False
        server.stop(jobs_too=False)
    return {
        "cycles": len(memory),
        "server_rss_mb_after_each_cycle": memory,
        "cycle_seconds_median": round(statistics.median(seconds), 1),
        "server": sampler.summary(),
    }


def memory_mb(pid: int) -> dict[str, float]:
    """MB of one process: resident, private (anonymous) and proportional share."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1]) / 1024
    return out


def job_pids(runs_dir: Path) -> list[int]:
    """The supervisors and trainers of the jobs in ``runs_dir`` now."""
    pids = []
    for pid_file in (runs_dir / ".jobs").glob("*.pid"):
        try:
            pids.append(int(pid_file.read_text()))
        except (OSError, ValueError):
            pass
    for status in runs_dir.glob("*/status.json"):
        pid = (runs.read_json(status, {}) or {}).get("pid")
        if pid and runs.process_alive(int(pid)):
            pids.append(int(pid))
    return sorted(set(pids))


def bench_memory(args) -> dict:
    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp(prefix="lmlab-memory-"))
    extra = dict(kv.split("=", 1) for kv in args.env)
    server = Server(runs_dir, env=extra)
    peaks: dict[str, float] = {}
    if args.cgroup_mb:  # a small host: the server and the jobs it starts share this limit
        group = Path(f"/sys/fs/cgroup/memory/lmlab-bench-{os.getpid()}")
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(args.cgroup_mb * 2**20))
        (group / "cgroup.procs").write_text(str(server.proc.pid))

    def note(key: str, value: float) -> None:
        peaks[key] = max(peaks.get(key, 0.0), value)

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1800})
            page.set_default_timeout(120_000)
            page.goto(f"{server.url}/train")
            page.get_by_role("button", name="Start training").wait_for()
            settle(page)
            if args.steps != 1000:
                set_field(page, "Steps", args.steps)
            page.get_by_role("button", name="Start training").click()
            t0 = time.perf_counter()
            seen_job = False
            while time.perf_counter() - t0 < args.timeout:
                try:
                    server_mb = memory_mb(server.proc.pid)
                    job_mb = [memory_mb(pid) for pid in job_pids(runs_dir)]
                except (OSError, StopIteration):
                    continue
                seen_job = seen_job or bool(job_mb)
                for key in ("VmRSS", "RssAnon", "Pss"):
                    job_total = sum(m.get(key, 0) for m in job_mb)
                    note(f"server_{key}", server_mb.get(key, 0))
                    note(f"job_{key}", job_total)
                    note(f"total_{key}", server_mb.get(key, 0) + job_total)
                if seen_job and not job_mb:
                    break  # the job has ended
                time.sleep(0.25)
            browser.close()
    finally:
        server.stop()
    statuses = [runs.read_status(p.parent) for p in runs_dir.glob("*/status.json")]
    jit = [
        (runs.read_json(p.parent / "config.json", {}) or {}).get("train", {}).get("jit_compile")
        for p in runs_dir.glob("*/status.json")
    ]
    return {
        "env": extra,
        "cgroup_mb": args.cgroup_mb,
        "jit_compile": jit,
        "steps": args.steps,
        "run_status": [s.get("status") for s in statuses],
        "peak_mb": {k: round(v) for k, v in sorted(peaks.items())},
    }


def live_loss_points(page) -> int:
    """Points on the live view's loss chart now, training and validation (step 0's first)."""
    return page.evaluate("""() => {
        for (const p of document.querySelectorAll('.js-plotly-plot')) {
            const titles = ((p.layout || {}).annotations || []).map(a => a.text);
            if (!titles.includes('Loss (nats)')) continue;  // not the live figure
            let n = 0;
            for (const t of (p._fullData || [])) if (t.xaxis === 'x' && t.x) n += t.x.length || 0;
            return n;
        }
        return 0;
    }""")


def _click_to_first_point(browser, url: str, shots: Path, tag: str) -> dict:
    """A new session opens Train and starts the default run as the form has it; the seconds
    from the click to the live loss chart's first point and to its first training point."""
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.set_default_timeout(120_000)
    page.goto(f"{url}/train")
    page.get_by_role("button", name="Start training").wait_for()
    settle(page)
    page.get_by_role("button", name="Start training").click()
    t0, found, shots_due = time.perf_counter(), {}, [1.0, 3.0, 6.0]
    while time.perf_counter() - t0 < 300 and "first_train_point_s" not in found:
        now = time.perf_counter() - t0
        if shots_due and now >= shots_due[0]:
            page.screenshot(path=str(shots / f"{tag}-{shots_due.pop(0):.0f}s.png"))
        if live_loss_points(page) and "first_point_s" not in found:
            found["first_point_s"] = round(now, 2)
            page.screenshot(path=str(shots / f"{tag}-first-point.png"))
        if curve_points(page):
            found["first_train_point_s"] = round(now, 2)
            page.screenshot(path=str(shots / f"{tag}-first-train-point.png"))
        page.wait_for_timeout(100)
    page.close()
    return found


def _stop_runs(runs_dir: Path) -> None:
    """Stop the runs started (the first points are what is measured) and wait for their end."""
    for run_dir in runs_dir.glob("2*"):
        runs.request_stop(run_dir)
    for run_dir in runs_dir.glob("2*"):
        wait_finished(run_dir)


def _warmed(runs_dir: Path, timeout: float) -> float | None:
    """Seconds until the server's warm-up of the cache ended (None: it did not within ``timeout``)."""
    t0, log = time.perf_counter(), warmup._files(runs_dir)[1]
    while time.perf_counter() - t0 < timeout:
        said = log.read_text() if log.is_file() else ""
        if "warm-up: done" in said or "warm-up failed:" in said:
            return round(time.perf_counter() - t0, 1) if "done" in said else None
        time.sleep(0.5)
    return None


def _generate_first_text(browser, server: Server, shots: Path, wait: float) -> float:
    """Generate's click to the first text, ``wait`` seconds after the page opened."""
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.set_default_timeout(120_000)
    page.goto(f"{server.url}/generate")
    page.get_by_role("button", name="Generate").wait_for()
    settle(page)
    page.wait_for_timeout(wait * 1000)
    before = page.locator('[data-testid="stText"]').count()
    page.get_by_role("button", name="Generate").click()
    t0 = time.perf_counter()
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=\"stText\"]').length > {before}")
    seconds = round(time.perf_counter() - t0, 2)
    page.screenshot(path=str(shots / f"generate-first-text-{wait:.0f}s.png"))
    page.close()
    return seconds


def bench_first_point(args) -> dict:
    """The click to the curve's first point for the Train page's default run:

    * ``very-first``: a fresh server (empty runs folder and compilation cache), clicked at
      once (the server's warm-up of the cache has just begun, and gives way);
    * ``after-a-run``: a new session on that server once that run has stopped (a warm
      trainer, a warm cache);
    * ``after-the-warm-up``: another fresh server, clicked once its warm-up has ended.

    Each run is stopped after its first training point. Then, on restarted servers (the runs
    kept), Generate's click to the first text, at once and ``--read`` seconds after the page
    opened (the checkpoint loads while the settings are read)."""
    from playwright.sync_api import sync_playwright

    base = Path(tempfile.mkdtemp(prefix="lmlab-first-"))
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    result: dict = {"env": dict(kv.split("=", 1) for kv in args.env)}

    def server_for(runs_dir: Path) -> Server:
        return Server(runs_dir, env={"LMLAB_COMPILE_CACHE": str(runs_dir / ".xla"), **result["env"]})

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        first, second = base / "first", base / "second"
        server = server_for(first)
        try:
            for tag in ("very-first", "after-a-run"):
                result[tag] = _click_to_first_point(browser, server.url, shots, tag)
                _stop_runs(first)
                time.sleep(args.settle)  # the finished job's supervisor starts the next warm trainer
        finally:
            server.stop()
        server = server_for(second)
        try:
            browser.new_page().goto(f"{server.url}/train")  # a first visit starts the warm-up
            result["warm_up_s"] = _warmed(second, 300)
            result["after-the-warm-up"] = _click_to_first_point(
                browser, server.url, shots, "after-the-warm-up"
            )
            _stop_runs(second)
        finally:
            server.stop()
        for wait in (0.0, args.read):
            server = server_for(first)  # a fresh server, the runs kept
            try:
                result[f"generate_first_text_s_after_{wait:g}s"] = _generate_first_text(
                    browser, server, shots, wait
                )
            finally:
                server.stop()
        browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    f = sub.add_parser("follow", help="sessions following one live run while two runs train")
    f.add_argument("--sessions", type=int, default=8)
    f.add_argument("--seconds", type=float, default=120)
    f.add_argument("--model", default="nano")
    f.add_argument("--watch", type=float, default=60, help="seconds of following only, before the reloads")
    f.add_argument("--jobs", type=int, choices=(1, 2), default=2, help="runs training beside the followers")
    c = sub.add_parser("cycles", help="train/generate cycles in one session")
    c.add_argument("--cycles", type=int, default=50)
    c.add_argument("--minutes", type=float, default=60, help="stop starting new cycles after this long")
    o = sub.add_parser("overhead", help="training speed from the command line and followed in the dashboard")
    o.add_argument("--rounds", type=int, default=3)
    o.add_argument("--steps", type=int, default=400)
    m = sub.add_parser("memory", help="peak memory of the server and one default run's job")
    m.add_argument("--steps", type=int, default=1000, help="the run's steps (the page's default: 1000)")
    m.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server and its jobs")
    m.add_argument("--timeout", type=float, default=900, help="seconds to wait for the run to end")
    m.add_argument(
        "--cgroup-mb", type=int, default=0, help="run the server in a memory cgroup of this size (root)"
    )
    fp = sub.add_parser(
        "first-point", help="click to the curve's first point, fresh and warm; Generate's first text"
    )
    fp.add_argument("--read", type=float, default=8, help="seconds on Generate before the second click")
    fp.add_argument("--settle", type=float, default=15, help="seconds between a run's end and the next click")
    fp.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server and its jobs")
    fp.add_argument("--screenshots", default="first-point-shots", help="folder for the screenshots")
    args = parser.parse_args()
    if args.what == "overhead" and min(args.rounds, args.steps) < 1:
        parser.error("--rounds and --steps must be at least 1")
    benches = dict(follow=bench_follow, cycles=bench_cycles, overhead=bench_overhead, memory=bench_memory)
    benches["first-point"] = bench_first_point
    result = benches[args.what](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
