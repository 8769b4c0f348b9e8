"""Background training jobs: ``python -m lmcore train`` in a child process, for the dashboard.

The dashboard never trains in its own process: it launches the same command line a user
would type, in a new session (so reruns, closed tabs and server restarts leave it running),
and then follows the run through its folder. Until the run folder exists (the corpus is
still loading, or the input was refused) the job is described by its log file in
``<runs dir>/.jobs/<run id>.log``.
"""

from __future__ import annotations

import os
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


def _spawn(root: Path, run_id: str, args: list[str], mode: str) -> None:
    _jobs_dir(root).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lmcore", "train", *args, "--runs-dir", str(root)]
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
    (_jobs_dir(root) / f"{run_id}.pid").write_text(str(proc.pid))
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends


def launch(root: Path, args: list[str], name: str | None = None, model: str = "run") -> str:
    """Start ``python -m lmcore train ARGS`` for a new run in ``root``; returns its run id."""
    run_id = runs.new_run_id(model, name)
    _spawn(root, run_id, [*args, "--run-id", run_id], "wb")
    return run_id


def resume(root: Path, run_id: str, steps: int | None = None) -> None:
    """Continue a stopped or interrupted run in a child process."""
    _spawn(root, run_id, ["--resume", run_id, *(["--steps", str(steps)] if steps else [])], "ab")


def state(root: Path, run_id: str) -> dict:
    """The job's state: the run's status once its folder exists, else starting/failed from the log."""
    run_dir = root / runs.check_run_id(run_id)
    if (run_dir / "status.json").is_file():
        return runs.read_status(run_dir)
    pid_file = _jobs_dir(root) / f"{run_id}.pid"
    pid = int(pid_file.read_text()) if pid_file.is_file() else 0
    if pid and runs.process_alive(pid):
        return {"status": "starting", "step": 0}
    log = log_path(root, run_id)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    errors = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
    return {
        "status": "failed",
        "step": 0,
        "message": errors[-1] if errors else (lines[-1] if lines else "the job did not start"),
    }


def log_tail(root: Path, run_id: str, lines: int = 20) -> str:
    log = log_path(root, run_id)
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
