"""Background training jobs: ``python -m lmcore train`` in a child process, for the dashboard.

The dashboard never trains in its own process: it launches the same command line a user
would type, in a new session (so reruns, closed tabs and server restarts leave it running),
and then follows the run through its folder. Until the run folder exists (the corpus is
still loading, or the input was refused) the job is described by its log file in
``<runs dir>/.jobs/<run id>.log``.

At most :func:`max_jobs` jobs train at once per runs directory (``LMLAB_MAX_JOBS``, by
default half the CPU cores, at least one): more share the cores and each goes slower, and
their memory adds up. Jobs beyond the limit wait in a queue that lives in the runs
directory, so every session and a restarted server see the same one::

    <runs dir>/.jobs/<id>.queued   the job's command line, while it waits
    <runs dir>/.jobs/<id>.pid      its process, once started
    <runs dir>/.jobs/queue.lock    held while the queue or the set of started jobs changes

A queued job starts when a slot frees: the finishing job starts the next one itself (the
child runs :func:`main`, which calls :func:`dispatch` after training), and anyone reading a
job's state (:func:`state`, which the dashboard polls) does the same, so a job that was
killed without finishing does not hold the queue up either.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lmcore import LMError, runs

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def max_jobs() -> int:
    """How many jobs may train at once: ``$LMLAB_MAX_JOBS``, else half the CPU cores (>= 1)."""
    value = os.environ.get("LMLAB_MAX_JOBS", "").strip()
    if value:
        try:
            if int(value) >= 1:
                return int(value)
        except ValueError:
            pass
        raise LMError(f"LMLAB_MAX_JOBS must be a whole number of at least 1, not {value!r}")
    return max(1, len(os.sched_getaffinity(0)) // 2)


def _jobs_dir(root: Path) -> Path:
    return root / ".jobs"


def log_path(root: Path, run_id: str) -> Path:
    return _jobs_dir(root) / f"{runs.check_run_id(run_id)}.log"


def _pid_path(root: Path, run_id: str) -> Path:
    return _jobs_dir(root) / f"{runs.check_run_id(run_id)}.pid"


def _queue_path(root: Path, run_id: str) -> Path:
    return _jobs_dir(root) / f"{runs.check_run_id(run_id)}.queued"


@contextlib.contextmanager
def _queue_lock(root: Path):
    """One process at a time decides what starts (sessions, servers and finishing jobs alike)."""
    _jobs_dir(root).mkdir(parents=True, exist_ok=True)
    with open(_jobs_dir(root) / "queue.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _spawn(root: Path, run_id: str, argv: list[str], mode: str) -> None:
    """Start ``python -m lmcore.jobs ROOT ARGV`` (``lmcore ARGV``, then :func:`dispatch`)."""
    root = root.resolve()  # the child runs elsewhere; a relative runs dir would point elsewhere too
    _jobs_dir(root).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lmcore.jobs", str(root), *argv, "--runs-dir", str(root)]
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    with open(log_path(root, run_id), mode) as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
            cwd=PACKAGE_ROOT,
            start_new_session=True,
        )
    _pid_path(root, run_id).write_text(str(proc.pid))
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends


def submit(root: Path, run_id: str, argv: list[str], mode: str = "wb") -> str:
    """Run ``python -m lmcore ARGV --runs-dir ROOT`` as job ``run_id``: now if a slot is
    free and nobody waits, else at the end of the queue. Returns ``run_id``.

    ``mode`` is how the job's log is opened: ``"wb"`` for a new job, ``"ab"`` to add to it.
    """
    runs.check_run_id(run_id)
    root = Path(root)
    with _queue_lock(root):
        if _queue_path(root, run_id).exists() or _job_alive(root, run_id):
            raise LMError(f"job {run_id} is already queued or running")
        if not queued(root) and len(active(root)) < max_jobs():
            _spawn(root, run_id, argv, mode)
        else:
            entry = {"argv": argv, "mode": mode, "queued": time.time()}
            runs.write_json(_queue_path(root, run_id), entry)
    return run_id


def launch(
    root: Path, args: list[str], name: str | None = None, model: str = "run", command: str = "train"
) -> str:
    """Start (or queue) ``python -m lmcore COMMAND ARGS`` for a new run in ``root``; returns its id."""
    run_id = runs.new_run_id(model, name)
    return submit(root, run_id, [command, *args, "--run-id", run_id], "wb")


def resume(root: Path, run_id: str, steps: int | None = None) -> None:
    """Continue a stopped or interrupted run in a child process (or queue it)."""
    submit(root, run_id, ["train", "--resume", run_id, *(["--steps", str(steps)] if steps else [])], "ab")


def _job_alive(root: Path, run_id: str) -> bool:
    try:
        pid = int(_pid_path(root, run_id).read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:  # a reused pid is some other program
            ours = b"lmcore" in f.read()
    except (OSError, ValueError):
        return False
    return ours and pid != os.getpid() and runs.process_alive(pid)


def active(root: Path) -> list[str]:
    """Ids of the jobs whose process is running now (a finishing job no longer counts itself)."""
    folder = _jobs_dir(Path(root))
    if not folder.is_dir():
        return []
    ids = [p.stem for p in folder.glob("*.pid") if runs.RUN_ID.match(p.stem)]
    return sorted(i for i in ids if _job_alive(root, i))


def queued(root: Path) -> list[str]:
    """Ids of the waiting jobs, first to start first."""
    folder = _jobs_dir(Path(root))
    if not folder.is_dir():
        return []
    entries = []
    for p in folder.glob("*.queued"):
        entry = runs.read_json(p)
        if entry is not None and runs.RUN_ID.match(p.stem):
            entries.append((entry.get("queued", 0), p.stem))
    return [run_id for _, run_id in sorted(entries)]


def dispatch(root: Path) -> list[str]:
    """Start queued jobs while slots are free; returns the ids started."""
    root = Path(root)
    if not queued(root):  # the common case, without taking the lock
        return []
    started = []
    with _queue_lock(root):
        for run_id in queued(root):
            if len(active(root)) >= max_jobs():
                break
            entry = runs.read_json(_queue_path(root, run_id))
            _queue_path(root, run_id).unlink(missing_ok=True)
            if entry and isinstance(entry.get("argv"), list):
                _spawn(root, run_id, [str(a) for a in entry["argv"]], entry.get("mode", "wb"))
                started.append(run_id)
    return started


def _last_error(root: Path, run_id: str) -> str | None:
    log = log_path(root, run_id)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    errors = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else None


def state(root: Path, run_id: str) -> dict:
    """The job's state.

    ``queued`` (with its ``position`` in the queue and the number of ``slots``) while it
    waits; then the run's own status once its folder exists, except that a job still
    loading (a new run, or a resume) reads ``starting``; before the folder exists,
    ``starting`` or ``failed`` with the error line from the job's log. A resume that failed
    before training leaves the run as it was, with ``job_error`` saying why.
    """
    run_dir = root / runs.check_run_id(run_id)
    dispatch(root)
    waiting = queued(root)
    if run_id in waiting:
        base = runs.read_status(run_dir) if (run_dir / "status.json").is_file() else {"step": 0}
        return {
            **base,
            "status": "queued",
            "position": waiting.index(run_id) + 1,
            "queue_length": len(waiting),
            "slots": max_jobs(),
        }
    alive = _job_alive(root, run_id)
    if (run_dir / "status.json").is_file():
        status = runs.read_status(run_dir)
        pid_file = _pid_path(root, run_id)
        started_after = (
            pid_file.is_file() and pid_file.stat().st_mtime > (run_dir / "status.json").stat().st_mtime
        )
        if status.get("status") != "running" and alive and started_after:  # a resume still loading
            return {**status, "status": "starting"}
        log = log_path(root, run_id)
        if not alive and log.is_file() and log.stat().st_mtime > (run_dir / "status.json").stat().st_mtime:
            error = _last_error(root, run_id)
            if error:
                status["job_error"] = error
        return status
    if alive:
        return {"status": "starting", "step": 0}
    error = _last_error(root, run_id)
    if error is None and log_path(root, run_id).is_file():
        error = log_path(root, run_id).read_text(encoding="utf-8", errors="replace").strip()[-300:]
    return {"status": "failed", "step": 0, "message": error or "the job did not start"}


def stop(root: Path, run_id: str) -> None:
    """Ask a job to stop: a queued one leaves the queue; a training one through its run
    folder (checkpoint saved); one still loading, with no run folder yet, by ending its process."""
    run_dir = root / runs.check_run_id(run_id)
    with _queue_lock(root):
        if _queue_path(root, run_id).exists():
            _queue_path(root, run_id).unlink()
            with open(log_path(root, run_id), "a", encoding="utf-8") as log:
                log.write("error: cancelled while waiting in the queue\n")
            return
    if run_dir.is_dir():
        runs.request_stop(run_dir)
    elif _job_alive(root, run_id):
        os.kill(int(_pid_path(root, run_id).read_text()), signal.SIGTERM)


def log_tail(root: Path, run_id: str, lines: int = 20) -> str:
    log = log_path(root, run_id)
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def main(argv: list[str]) -> int:
    """The child: ``python -m lmcore.jobs ROOT ARGV...`` runs ``python -m lmcore ARGV`` in this
    process, then starts whichever queued jobs the slot it leaves makes room for."""
    from lmcore import cli

    root, rest = Path(argv[0]), argv[1:]
    try:
        return cli.main(rest)
    finally:
        try:
            dispatch(root)
        except Exception as err:  # the next reader of the queue starts them instead
            print(f"note: could not start queued jobs: {err}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
