"""Background training jobs: ``python -m lmcore train`` in a child process, for the dashboard.

The dashboard never trains in its own process: it launches the same command line a user
would type, in a new session (so reruns, closed tabs and server restarts leave it running),
and then follows the run through its folder. Until the run folder exists (the corpus is
still loading, or the input was refused) the job is described by its log file in
``<runs dir>/.jobs/<run id>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from lmcore import runs

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _jobs_dir(root: Path) -> Path:
    return root / ".jobs"


def log_path(root: Path, run_id: str) -> Path:
    return _jobs_dir(root) / f"{runs.check_run_id(run_id)}.log"


def _pid_path(root: Path, run_id: str) -> Path:
    return _jobs_dir(root) / f"{runs.check_run_id(run_id)}.pid"


def _spawn(root: Path, run_id: str, argv: list[str], mode: str) -> None:
    """Start ``python -m lmcore ARGV --runs-dir ROOT`` as job ``run_id``."""
    root = root.resolve()  # the child runs elsewhere; a relative runs dir would point elsewhere too
    _jobs_dir(root).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lmcore", *argv, "--runs-dir", str(root)]
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
    """Run ``python -m lmcore ARGV --runs-dir ROOT`` as job ``run_id``; returns ``run_id``."""
    runs.check_run_id(run_id)
    _spawn(Path(root), run_id, argv, mode)
    return run_id


def launch(
    root: Path, args: list[str], name: str | None = None, model: str = "run", command: str = "train"
) -> str:
    """Start ``python -m lmcore COMMAND ARGS`` for a new run in ``root``; returns its run id."""
    run_id = runs.new_run_id(model, name)
    return submit(root, run_id, [command, *args, "--run-id", run_id], "wb")


def resume(root: Path, run_id: str, steps: int | None = None) -> None:
    """Continue a stopped or interrupted run in a child process."""
    submit(root, run_id, ["train", "--resume", run_id, *(["--steps", str(steps)] if steps else [])], "ab")


def _job_alive(root: Path, run_id: str) -> bool:
    try:
        pid = int(_pid_path(root, run_id).read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:  # a reused pid is some other program
            ours = b"lmcore" in f.read()
    except (OSError, ValueError):
        return False
    return ours and runs.process_alive(pid)


def _last_error(root: Path, run_id: str) -> str | None:
    log = log_path(root, run_id)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    errors = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else None


def state(root: Path, run_id: str) -> dict:
    """The job's state.

    The run's own status once its folder exists, except that a job still loading (a new
    run, or a resume) reads ``starting``; before the folder exists, ``starting`` or
    ``failed`` with the error line from the job's log. A resume that failed before training
    leaves the run as it was, with ``job_error`` saying why.
    """
    run_dir = root / runs.check_run_id(run_id)
    alive = _job_alive(root, run_id)
    if (run_dir / "status.json").is_file():
        status = runs.read_status(run_dir)
        started_after = _pid_path(root, run_id).stat().st_mtime > (run_dir / "status.json").stat().st_mtime
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
    """Ask a job to stop: through its run folder (checkpoint saved), or, while it is still
    loading and has no run folder yet, by ending its process."""
    run_dir = root / runs.check_run_id(run_id)
    if run_dir.is_dir():
        runs.request_stop(run_dir)
    elif _job_alive(root, run_id):
        os.kill(int(_pid_path(root, run_id).read_text()), signal.SIGTERM)


def log_tail(root: Path, run_id: str, lines: int = 20) -> str:
    log = log_path(root, run_id)
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
