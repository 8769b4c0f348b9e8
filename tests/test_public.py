"""Public mode (issue 13): the policy, who may manage a job, the caps, and the disk budget.

The job-layer checks run against real ``jobs.submit`` calls; the start of a process is
replaced by a recorder only where a test needs a job that stays "running" without training.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_jobs import wait_for

from conftest import ROOT
from lmcore import LMError, cli, runs
from lmcore.jobs import public, queue, specs

PUBLIC = public.Policy(public=True, max_steps=300, max_minutes=5, admin_password="letmein")
ALICE, BOB = public.Actor("alice-token"), public.Actor("bob-token")
ADMIN = public.Actor("carol-token", admin=True)


def test_public_mode_is_off_unless_asked_for_and_reads_secrets_then_the_environment():
    assert public.Policy.from_settings({}, {}).public is False
    assert public.Policy.from_settings({"public": True}, {}).public is True
    policy = public.Policy.from_settings({"public": "false", "max_steps": 500}, {"LMLAB_PUBLIC": "1"})
    assert policy.public is True and policy.max_steps == 500  # the environment wins
    assert public.Policy.from_settings({}, {"LMLAB_MAX_MINUTES": "2.5"}).max_minutes == 2.5
    with pytest.raises(LMError, match="max_steps must be a positive number"):
        public.Policy.from_settings({"max_steps": "lots"}, {})
    with pytest.raises(LMError, match="disk_budget_mb must be a positive number"):
        public.Policy.from_settings({"disk_budget_mb": -1}, {})
    assert "letmein" not in repr(PUBLIC)  # never printed with the policy


def test_the_admin_password_unlocks_only_when_it_is_set_and_right():
    assert PUBLIC.is_admin("letmein")
    assert not PUBLIC.is_admin("letmein ") and not PUBLIC.is_admin("") and not PUBLIC.is_admin("LETMEIN")
    assert not public.Policy(public=True).is_admin("")  # no password set: nobody is admin


@pytest.fixture
def fake_start(monkeypatch):
    """Jobs that 'run' until the test ends them: ``_spawn`` records, ``active`` reports them."""
    started: dict[str, dict] = {}
    monkeypatch.setenv("LMLAB_MAX_JOBS", "10")
    monkeypatch.setattr(queue, "_spawn", lambda root, run_id, mode, env: started.update({run_id: env}))
    monkeypatch.setattr(queue, "active", lambda root: sorted(started))
    return started


def test_a_run_belongs_to_its_session_and_others_cannot_stop_resume_or_delete_it(tmp_path, fake_start):
    run_id = queue.launch(
        tmp_path,
        cli.spec_from_argv(["train", "--model", "tiny", "--steps", "100"]),
        "alice",
        actor=ALICE,
        policy=PUBLIC,
    )
    assert queue.owner(tmp_path, run_id) == ALICE.owner_id != BOB.owner_id
    assert "alice-token" not in (tmp_path / ".jobs" / f"{run_id}.owner").read_text()  # only its hash
    for call in (queue.stop, queue.delete, queue.resume):
        with pytest.raises(LMError, match="only the session that started"):
            call(tmp_path, run_id, actor=BOB, policy=PUBLIC)
        with pytest.raises(LMError, match="only the session that started"):
            call(tmp_path, run_id, actor=None, policy=PUBLIC)  # nobody in particular
    assert queue.may_manage(tmp_path, run_id, ALICE, PUBLIC)
    assert queue.may_manage(tmp_path, run_id, ADMIN, PUBLIC)  # the admin unlocks everything
    assert queue.may_manage(tmp_path, run_id, BOB, None)  # public mode off: a laptop, as before
    (tmp_path / run_id).mkdir()
    queue.stop(tmp_path, run_id, actor=ADMIN, policy=PUBLIC)
    assert runs.stop_requested(tmp_path / run_id)


def test_one_job_per_session_and_steps_over_the_cap_are_refused_when_submitted(tmp_path, fake_start):
    first = queue.launch(
        tmp_path, cli.spec_from_argv(["train", "--steps", "300"]), "a", actor=ALICE, policy=PUBLIC
    )
    assert fake_start[first]["LMLAB_JOB_MAX_STEPS"] == "300"  # the trainer gets the caps too
    assert float(fake_start[first]["LMLAB_JOB_DEADLINE"]) == pytest.approx(time.time() + 300, abs=30)
    with pytest.raises(LMError, match="one job at a time per visitor"):
        queue.launch(
            tmp_path, cli.spec_from_argv(["train", "--steps", "100"]), "again", actor=ALICE, policy=PUBLIC
        )
    with pytest.raises(LMError, match="at most 300 steps a run, not 301"):
        queue.launch(tmp_path, cli.spec_from_argv(["train", "--steps=301"]), "long", actor=BOB, policy=PUBLIC)
    with pytest.raises(LMError, match="needs the session"):
        queue.launch(tmp_path, cli.spec_from_argv(["train", "--steps", "10"]), "anonymous", policy=PUBLIC)
    queue.launch(
        tmp_path, cli.spec_from_argv(["train", "--steps", "300"]), "b", actor=BOB, policy=PUBLIC
    )  # another session may
    admin = queue.launch(
        tmp_path, cli.spec_from_argv(["train", "--steps", "100000"]), "c", actor=ADMIN, policy=PUBLIC
    )
    assert "LMLAB_JOB_MAX_STEPS" not in fake_start[admin]  # the presenter is not capped
    queue.launch(
        tmp_path, cli.spec_from_argv(["train", "--steps", "100000"]), "d", actor=ALICE
    )  # and a laptop never is


def _cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "lmcore", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.mark.slow  # trains for real
def test_the_trainer_keeps_the_caps_it_is_given_steps_after_epochs_and_the_deadline(small_file, tmp_path):
    tiny = ["--corpus", str(small_file), "--model", "tiny", "--runs-dir", str(tmp_path), "--batch-size", "8"]
    capped = {"LMLAB_JOB_MAX_STEPS": "100"}
    out = _cli("train", *tiny, "--epochs", "3", env=capped)  # epochs become steps past the cap
    assert out.returncode == 2 and out.stderr.strip().startswith("error: this server trains at most 100")
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # nothing left behind

    soon = {"LMLAB_JOB_DEADLINE": repr(time.time() + 15), "LMLAB_JOB_MINUTES": "0.25"}
    started = time.time()
    out = _cli("train", *tiny, "--steps", "1000000", "--log-every", "10", "--json", env=soon)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr
    assert result["status"] == "stopped" and 0 < result["steps"] < 1_000_000
    assert "time limit (0.25 minutes a job)" in result["message"]
    assert time.time() - started < 120
    assert runs.checkpoint(Path(result["run_dir"])).is_file()  # stopped cleanly, resumable


def _fake_run(root: Path, run_id: str, status: str, size: int, updated: float) -> Path:
    run_dir = root / run_id
    (run_dir / "checkpoints").mkdir(parents=True)
    runs.write_json(run_dir / "config.json", {"model_name": "tiny", "train": {"steps": 10}})
    # A "running" one is trained by a live process on this host: this one.
    status_record = {"status": status, "updated": updated, "pid": os.getpid(), "host": socket.gethostname()}
    runs.write_json(run_dir / "status.json", status_record)
    (run_dir / "checkpoints" / "last.keras").write_bytes(b"\0" * size)
    return run_dir


def test_the_disk_budget_removes_the_oldest_finished_runs_first_never_pinned_or_busy_ones(tmp_path):
    mb = 2**20
    now = time.time()
    _fake_run(tmp_path, "a-oldest", "completed", mb, now - 400)
    _fake_run(tmp_path, "b-pinned", "stopped", mb, now - 300)
    _fake_run(tmp_path, "c-queued", "stopped", mb, now - 250)
    _fake_run(tmp_path, "d-older", "failed", mb, now - 200)
    _fake_run(tmp_path, "e-training", "running", mb, now - 500)
    _fake_run(tmp_path, "f-newest", "completed", mb, now - 100)
    upload = tmp_path / ".uploads" / "0123abcd"
    upload.mkdir(parents=True)
    (upload / "text.txt").write_bytes(b"x" * mb)
    public.pin(tmp_path, "b-pinned")

    removed = public.keep_budget(tmp_path, int(5.5 * mb), busy={"c-queued"})
    assert [r["name"] for r in removed] == ["a-oldest", "d-older"]  # oldest first, until it fits
    assert public.disk_usage(tmp_path) <= 5.5 * mb
    left = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert left == {"b-pinned", "c-queued", "e-training", "f-newest"}
    assert [e["name"] for e in public.evictions(tmp_path)] == ["a-oldest", "d-older"]  # recorded
    assert removed[0]["bytes"] >= mb and removed[0]["kind"] == "run"

    removed = public.keep_budget(tmp_path, int(1.5 * mb), busy={"c-queued"})
    assert [r["name"] for r in removed] == ["f-newest", "0123abcd"]  # then uploads, when runs are not enough
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {
        "b-pinned",
        "c-queued",
        "e-training",
    }
    assert queue.state(tmp_path, "a-oldest")["status"] == "evicted"  # a follower is told, not 'failed'


def test_submitting_in_public_mode_keeps_the_budget_and_spares_the_pins(tmp_path, fake_start):
    mb = 2**20
    _fake_run(tmp_path, "old-run", "completed", 2 * mb, time.time() - 100)
    _fake_run(tmp_path, "kept-run", "completed", 2 * mb, time.time() - 200)
    public.pin(tmp_path, "kept-run")
    tight = public.Policy(public=True, disk_budget_mb=3)
    queue.launch(tmp_path, cli.spec_from_argv(["train", "--steps", "10"]), "new", actor=ALICE, policy=tight)
    assert not (tmp_path / "old-run").exists() and (tmp_path / "kept-run").is_dir()
    assert [e["name"] for e in public.evictions(tmp_path)] == ["old-run"]


def test_a_job_over_the_servers_memory_cap_fails_with_the_reason_and_keeps_the_queue_going(
    small_file, tmp_path, monkeypatch
):
    """The supervisor ends a trainer past LMLAB_JOB_MEMORY_MB (TensorFlow alone is past 150 MB)."""
    monkeypatch.setenv("LMLAB_JOB_MEMORY_MB", "150")
    run_id = queue.launch(
        tmp_path,
        cli.spec_from_argv(["train", "--corpus", str(small_file), "--steps", "50", *_TINY_ARGS]),
        model="tiny",
    )
    state = wait_for(tmp_path, run_id, lambda s: s["status"] not in ("starting", "queued", "running"))
    assert state["status"] == "failed"
    assert state["message"].startswith("out of memory: the training process used")
    assert "more than the 150 MB this server allows a job" in state["message"]


_TINY_ARGS = ["--model", "tiny", "--batch-size", "8", "--log-every", "5", "--sample-length", "0"]


def _memory_cgroup() -> tuple[Path, str, str] | None:
    """A memory cgroup of our own: (folder, limit file, usage file); None where the host forbids it."""
    for base, limit, usage in (
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
        ("/sys/fs/cgroup", "memory.max", "memory.current"),
    ):
        group = Path(base) / f"lmlab-test-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / limit).write_text(str(8 * 2**30))
            return group, limit, usage
        except OSError:
            continue
    return None


@pytest.mark.slow  # trains for real
def test_a_trainer_killed_by_the_kernel_for_memory_leaves_its_run_failed_with_the_reason(
    small_file, tmp_path
):
    """The real thing: the job's supervisor runs in a memory cgroup whose limit drops, once the
    run has passed its memory check and started, to just above what it uses (a host whose
    memory other work takes): compiling the first step then gets the trainer OOM-killed."""
    found = _memory_cgroup()
    if found is None:
        pytest.skip("this host does not let a test make a memory cgroup (needs root and cgroups)")
    group, limit_file, usage_file = found
    run_id = "20261201-000000-oom-0001"
    argv = [
        "train",
        "--corpus",
        str(small_file),
        "--model",
        "nano",
        "--steps",
        "50",
        "--jit",
        "--run-id",
        run_id,
    ]
    (tmp_path / ".jobs").mkdir()
    specs.save(cli.spec_from_argv(argv), tmp_path / ".jobs" / f"{run_id}.spec.json")  # as jobs.submit does
    log = open(tmp_path / ".jobs" / f"{run_id}.log", "wb")
    script = f'echo $$ > {group}/cgroup.procs && exec "$0" -m lmcore.jobs.supervisor "$@"'
    proc = subprocess.Popen(
        ["sh", "-c", script, sys.executable, str(tmp_path), run_id],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LMLAB_JOB_MEMORY_MB": ""},
    )
    try:
        deadline = time.time() + 120
        while not (tmp_path / run_id / "status.json").is_file() and time.time() < deadline:
            time.sleep(0.05)
        assert (tmp_path / run_id / "status.json").is_file(), queue.log_tail(tmp_path, run_id)
        used = int((group / usage_file).read_text())
        (group / limit_file).write_text(str(used + 60 * 2**20))  # XLA's compilation needs ~300 MB more
        code = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        try:
            group.rmdir()
        except OSError:
            pass
    state = queue.state(tmp_path, run_id)
    assert code == 1, queue.log_tail(tmp_path, run_id)
    assert state["status"] == "failed", state
    assert state["message"].startswith("out of memory: the system stopped the training process"), state


def test_a_full_queue_refuses_a_visitor_with_what_to_do_instead(tmp_path, fake_start, monkeypatch):
    monkeypatch.setenv("LMLAB_MAX_JOBS", "1")
    policy = public.Policy(public=True, max_queued=2, admin_password="letmein")
    visitors = [public.Actor(f"visitor-{n}") for n in range(4)]
    ids = [
        queue.launch(
            tmp_path, cli.spec_from_argv(["train", "--steps", "10"]), f"v{n}", actor=who, policy=policy
        )
        for n, who in enumerate(visitors[:3])
    ]
    assert list(fake_start) == ids[:1] and queue.queued(tmp_path) == ids[1:]  # one training, two waiting
    with pytest.raises(LMError, match=r"the queue is full: 2 jobs are waiting .* Watch a run in progress"):
        queue.launch(
            tmp_path, cli.spec_from_argv(["train", "--steps", "10"]), "v3", actor=visitors[3], policy=policy
        )
    assert len(queue.queued(tmp_path)) == 2  # nothing added
    admin = public.Actor("presenter", admin=True)  # the presenter is never turned away
    queue.launch(tmp_path, cli.spec_from_argv(["train", "--steps", "10"]), "p", actor=admin, policy=policy)
    assert public.Policy().max_queued == 5


def test_an_identical_job_is_joined_not_trained_again_and_any_change_trains_its_own(tmp_path, fake_start):
    spec = cli.spec_from_argv(["train", "--model", "tiny", "--steps", "100", "--seed", "3"])
    first, joined = queue.launch_or_join(tmp_path, spec, actor=ALICE, policy=PUBLIC)
    assert not joined and list(fake_start) == [first]
    again, joined = queue.launch_or_join(tmp_path, replace(spec, name="bob's"), actor=BOB, policy=PUBLIC)
    assert (again, joined) == (first, True) and list(fake_start) == [first]  # a name is not a setting
    assert queue.owner(tmp_path, first) == ALICE.owner_id  # still alice's run to stop
    reseeded = replace(spec, train=replace(spec.train, seed=4))
    other, joined = queue.launch_or_join(tmp_path, reseeded, actor=BOB, policy=PUBLIC)
    assert not joined and other != first and list(fake_start) == [first, other]

    fake_start.clear()  # both ended: a completed twin is still joined, a stopped one is not
    (tmp_path / first).mkdir(), (tmp_path / other).mkdir()
    runs.write_status(tmp_path / first, "completed", step=100)
    runs.write_status(tmp_path / other, "stopped", step=40)
    assert queue.launch_or_join(tmp_path, spec, actor=public.Actor("dan"), policy=PUBLIC) == (first, True)
    third, joined = queue.launch_or_join(tmp_path, reseeded, actor=public.Actor("eve"), policy=PUBLIC)
    assert not joined and third not in (first, other)
    laptop, joined = queue.launch_or_join(tmp_path, spec, actor=ALICE)  # not public: always its own
    assert not joined and laptop != first


def test_a_jobs_fingerprint_counts_an_upload_by_its_content_not_its_name():
    def on(source):
        return specs.fingerprint(cli.spec_from_argv(["train", "--corpus", source, "--steps", "10"]))

    assert on("/srv/runs/.uploads/0123456789abcdef/a.txt") == on("/x/.uploads/0123456789abcdef/b.txt")
    assert on("/srv/runs/.uploads/0123456789abcdef/a.txt") != on("/srv/runs/.uploads/fedcba9876543210/a.txt")
    assert on("builtin:python-docs") != on("builtin:markov")
    assert specs.fingerprint(specs.ResumeSpec("some-run")) is None  # only new runs are shared
