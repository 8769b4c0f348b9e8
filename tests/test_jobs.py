"""Background jobs as the dashboard launches them: real child processes training a tiny model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lmcore import cli, runs
from lmcore.jobs import queue

TINY = [
    "--model",
    "tiny",
    "--batch-size",
    "8",
    "--log-every",
    "5",
    "--eval-batches",
    "1",
    "--sample-length",
    "0",
]


def wait_for(root: Path, run_id: str, done, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = queue.state(root, run_id)
        if done(state):
            return state
        time.sleep(0.2)
    raise AssertionError(
        f"job {run_id} stuck at {queue.state(root, run_id)}; log:\n{queue.log_tail(root, run_id)}"
    )


def finished(state: dict) -> bool:
    return state["status"] in ("completed", "stopped", "failed", "interrupted")


@pytest.mark.slow  # trains for real
def test_a_relative_runs_dir_means_the_same_folder_to_the_app_and_the_child(
    small_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the app's working directory is not the package's
    root = Path("relative-runs")
    run_id = queue.launch(
        root,
        cli.spec_from_argv(["train", "--corpus", str(small_file), "--steps", "10", *TINY]),
        "rel",
        "tiny",
    )
    state = wait_for(root, run_id, finished)
    assert state["status"] == "completed", queue.log_tail(root, run_id)
    assert (tmp_path / "relative-runs" / run_id / "checkpoints" / "last.keras").is_file()


def test_a_refused_job_reports_its_one_line_error_and_leaves_no_run(tmp_path):
    run_id = queue.launch(
        tmp_path,
        cli.spec_from_argv(["train", "--corpus", str(tmp_path / "missing.txt"), *TINY]),
        model="tiny",
    )
    state = wait_for(tmp_path, run_id, lambda s: s["status"] != "starting", 60)
    assert state["status"] == "failed"
    assert state["message"].startswith("no such file")
    assert not (tmp_path / run_id).exists()


@pytest.mark.slow  # trains for real
def test_stop_works_while_loading_and_while_training(small_file, tmp_path):
    early = queue.launch(
        tmp_path,
        cli.spec_from_argv(["train", "--corpus", str(small_file), "--steps", "100000", *TINY]),
        model="tiny",
    )
    queue.stop(tmp_path, early)  # at once: still importing TensorFlow, no run folder yet
    state = wait_for(tmp_path, early, lambda s: s["status"] != "starting", 60)
    assert state["status"] in ("failed", "stopped", "interrupted")  # ended, whichever point it reached

    late = queue.launch(
        tmp_path,
        cli.spec_from_argv(["train", "--corpus", str(small_file), "--steps", "100000", *TINY]),
        model="tiny",
    )
    wait_for(tmp_path, late, lambda s: s["status"] == "running" and s.get("step", 0) >= 5)
    queue.stop(tmp_path, late)
    state = wait_for(tmp_path, late, finished, 60)
    assert state["status"] == "stopped"
    assert runs.checkpoint(tmp_path / late).is_file()


def test_a_resume_that_fails_before_training_says_why(tiny_run, tmp_path):
    root = tmp_path / "runs"
    run_dir = root / tiny_run.name
    shutil.copytree(tiny_run, run_dir)
    runs.write_status(run_dir, "stopped", step=20)
    with open(run_dir / "corpus.txt", "a", encoding="utf-8") as f:
        f.write("an edit after training")  # the saved corpus no longer matches its checksum
    time.sleep(0.05)
    queue.resume(root, run_dir.name, steps=40)
    state = wait_for(root, run_dir.name, lambda s: s["status"] != "starting" and "job_error" in s, 60)
    assert state["status"] == "stopped"  # the run is as it was...
    assert "has changed" in state["job_error"]  # ...and the page can say why it did not resume


def test_a_job_between_the_queue_and_its_process_reads_starting_not_failed(tmp_path, monkeypatch):
    """Issue 13: the job leaves the queue and gets its pid file inside one hold of the queue
    lock; a reader that comes in between (held open here) must not call it failed."""
    run_id = "20261201-000000-held-0001"
    argv = ["train", "--corpus", str(tmp_path / "missing.txt"), *TINY, "--run-id", run_id]
    with monkeypatch.context() as m:
        m.setattr(queue, "active", lambda root: ["someone-else"])  # every slot busy: it queues
        queue.submit(tmp_path, run_id, cli.spec_from_argv(argv))
    assert queue.queued(tmp_path) == [run_id]

    popen, entered, release = subprocess.Popen, threading.Event(), threading.Event()

    def held_popen(*args, **kwargs):  # the start path, stopped inside the window
        entered.set()
        assert release.wait(60), "the test never released the start"
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", held_popen)
    starter = threading.Thread(target=queue.dispatch, args=(tmp_path,))
    starter.start()
    assert entered.wait(60), "dispatch never reached the start of the queued job"
    assert queue.queued(tmp_path) == []  # out of the queue, and no process yet

    seen = {}
    reader = threading.Thread(target=lambda: seen.update(queue.state(tmp_path, run_id)))
    reader.start()
    reader.join(2)  # a reader that does not wait for the start answers now, and wrongly
    release.set()
    reader.join(60)
    starter.join(60)
    monkeypatch.setattr(subprocess, "Popen", popen)
    assert seen.get("status") == "starting", seen

    state = wait_for(tmp_path, run_id, lambda s: s["status"] != "starting", 60)
    assert state["status"] == "failed" and state["message"].startswith("no such file"), state


def test_the_child_is_started_from_the_folder_that_holds_lmcore():
    """The README's first command installs requirements only: the job's child finds ``lmcore``
    through the checkout, which the job layer must name (not a folder inside the package)."""
    assert (queue.PACKAGE_ROOT / "lmcore" / "__init__.py").is_file()
    assert (queue.PACKAGE_ROOT / "app.py").is_file()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _waiting_spare(root: Path, timeout: float = 120) -> tuple[int, int]:
    """(supervisor, trainer) pids of the warm trainer once it has loaded TensorFlow and waits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = queue._spare_alive(root)
        log = queue.spare_file(root, "log")
        said = re.findall(
            r"waiting for a job \(warm trainer, pid (\d+)\)", log.read_text() if log.is_file() else ""
        )
        if pid and said and said[-1] in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            return pid, int(said[-1])
        time.sleep(0.2)
    raise AssertionError(f"no warm trainer waits in {root}")


@pytest.mark.slow  # trains for real
def test_a_job_handed_to_the_warm_trainer_runs_with_its_own_caps_and_leaves_nothing_behind(
    small_file, tmp_path, monkeypatch
):
    from lmcore.jobs import public

    monkeypatch.setenv("LMLAB_WARM_TRAINER", "1")
    monkeypatch.setenv("LMLAB_COMPILE_CACHE", str(tmp_path / "xla"))
    root = tmp_path / "runs"
    assert queue.keep_spare(root)
    policy = public.Policy(public=True, max_steps=1000, max_minutes=0.0001)  # a cap that stops at once
    spares, sizes = [], []
    try:
        for n in range(5):
            spare, child = _waiting_spare(root)
            sizes.append(_rss_mb(child))
            spares.append(child)
            argv = ["train", "--corpus", str(small_file), "--steps", "10", *TINY]
            actor = public.Actor(session=f"visitor-{n}")
            job_policy = policy if n == 0 else None
            run_id = queue.launch(root, cli.spec_from_argv(argv), f"w{n}", "tiny", actor, job_policy)
            assert queue.job_file(root, run_id, "pid").read_text() == str(spare)  # handed over, not cold
            state = wait_for(root, run_id, finished)
            log = queue.log_tail(root, run_id, 40)
            assert "warm: TensorFlow already loaded" in log
            if n == 0:  # the job's own caps reached the warm trainer: the time cap stopped it
                assert state["status"] == "stopped" and "time limit" in state["message"], log
            else:
                assert state["status"] == "completed", log
                assert len(runs.read_jsonl(root / run_id / "metrics.jsonl")) == 3  # step 0, two intervals
        assert len(set(spares)) == 5  # one process a job: nothing of one job stays for the next
        assert list((tmp_path / "xla").glob("*/store/*.pb"))  # a warm trainer's XLA uses the cache too
        assert max(sizes) < 1.25 * min(sizes), sizes  # the waiting trainers do not grow job after job
    finally:
        spare = queue._spare_alive(root)
        if spare:
            os.killpg(spare, 15)


# ---------------------------------------------------------------------------- the cache's warm-up


def test_the_warm_up_is_not_started_where_it_is_off_has_no_cache_or_no_room(tmp_path, monkeypatch):
    from lmcore.jobs import warmup

    root = tmp_path / "runs"
    monkeypatch.setenv("LMLAB_WARM_CACHE", "1")
    monkeypatch.setattr(queue, "room_beside_a_job", lambda: False)  # memory short
    assert warmup.start(root) is None
    monkeypatch.setattr(queue, "room_beside_a_job", lambda: True)
    monkeypatch.setenv("LMLAB_WARM_CACHE", "0")
    assert warmup.start(root) is None
    monkeypatch.setenv("LMLAB_WARM_CACHE", "1")
    monkeypatch.setenv("LMLAB_COMPILE_CACHE", "off")
    assert warmup.start(root) is None
    assert not runs.jobs_dir(root).exists()  # nothing was started


def _ended(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not runs.process_alive(pid):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow  # compiles the default run's steps for real
def test_the_warm_up_gives_way_to_a_job_then_warms_the_cache_once_and_leaves_no_run(
    small_file, tmp_path, monkeypatch
):
    from lmcore import xla_cache
    from lmcore.jobs import warmup

    monkeypatch.setenv("LMLAB_WARM_CACHE", "1")
    monkeypatch.setenv("LMLAB_COMPILE_CACHE", str(tmp_path / "xla"))
    monkeypatch.setattr(queue, "room_beside_a_job", lambda: True)
    root = tmp_path / "runs"
    pid_file, log, scratch = warmup._files(root)
    pid = warmup.start(root)
    assert pid and warmup.start(root) is None  # one at a time
    deadline = time.time() + 120
    while not scratch.is_dir() and time.time() < deadline:  # it has begun the default run
        time.sleep(0.2)
    assert scratch.is_dir(), log.read_text()
    argv = ["train", "--corpus", str(small_file), "--steps", "10", *TINY]
    run_id = queue.launch(root, cli.spec_from_argv(argv), "job", "tiny")
    assert _ended(pid, 10), "the warm-up did not give way to a job"
    assert "giving way" in log.read_text() and not scratch.exists()
    marks = [warmup.mark(spec) for spec in warmup.warmed_specs()]  # the quick demo, the default run
    assert len(set(marks)) == 2 and not any(m.exists() for m in marks)  # it tries again next time
    assert wait_for(root, run_id, finished)["status"] == "completed"
    deadline = time.time() + 30
    while queue.active(root) and time.time() < deadline:  # its supervisor is ending too
        time.sleep(0.2)

    pid = warmup.start(root)  # no job now: it warms the cache, once
    assert pid and _ended(pid, 300), log.read_text()
    assert "warm-up: done" in log.read_text(), log.read_text()
    for spec, done in zip(warmup.warmed_specs(), marks, strict=True):
        assert f"warm-up: {spec.label()} warmed" in log.read_text(), log.read_text()
        assert done.exists() and json.loads(done.read_text())["entries"] >= 1
    store = tmp_path / "xla" / xla_cache.key() / "store"
    assert list(store.glob("*.pb")) and not list(store.parent.glob("work-*"))
    assert not scratch.exists() and not pid_file.exists()
    assert [r["run_id"] for r in runs.list_runs(root)] == [run_id]  # it left no run behind
    assert warmup.start(root) is None  # done once per cache


def test_the_quick_demo_is_the_default_run_shortened_and_within_a_public_cap():
    from dataclasses import replace

    from lmcore.jobs import warmup

    demo, default = warmup.demo_spec(), warmup.default_spec()
    assert demo.train.steps == warmup.DEMO_STEPS < default.train.steps and demo.name == "quick-demo"
    assert replace(demo, train=default.train, name=None) == default  # only its length and name differ
    assert warmup.demo_spec(100).train.steps == 100  # a public server's cap
    assert [s.name for s in warmup.warmed_specs()] == ["quick-demo", None]  # the warm-up compiles both


def test_a_queued_job_is_told_when_it_should_start_from_the_pace_of_the_jobs_ahead(
    tiny_run, tmp_path, monkeypatch
):
    from lmcore.jobs import eta

    root = tmp_path / "runs"
    busy = root / "20261201-000000-busy-0001"
    shutil.copytree(tiny_run, busy)
    (busy / runs.METRICS).write_text(  # 1 step a second, at step 20 of the record's 30
        "".join(json.dumps({"step": s, "time": float(s), "loss": 3.0}) + "\n" for s in (10, 15, 20))
    )
    runs.write_status(busy, "running", step=20)  # this process: alive
    monkeypatch.setenv("LMLAB_MAX_JOBS", "1")
    monkeypatch.setattr(queue, "active", lambda r: [busy.name])
    first, second = "20261201-000001-first-0001", "20261201-000002-second-0001"
    for run_id, steps in ((first, "40"), (second, "50")):
        argv = ["train", "--corpus", str(tmp_path / "none.txt"), *TINY, "--steps", steps, "--run-id", run_id]
        queue.submit(root, run_id, cli.spec_from_argv(argv))
        time.sleep(0.01)  # queued in this order
    assert queue.queued(root) == [first, second]
    assert queue.starts_in(root, first) == pytest.approx(10)  # the busy run's 10 steps left
    assert queue.starts_in(root, second) == pytest.approx(10 + eta.STARTUP_S + 40)
    assert queue.starts_in(root, busy.name) is None  # not queued
    monkeypatch.setattr(queue, "active", lambda r: [])  # nothing measured: no figure made up
    (busy / runs.METRICS).write_text("")
    assert queue.starts_in(root, second) is None
