"""The supervisor of one training job: ``python -m lmcore.jobs.supervisor ROOT RUN_ID``.

The job layer (:mod:`lmcore.jobs.queue`) starts this small process in a session of its own; it
runs the job's spec as its child (``python -m lmcore run SPEC``, the command line's code),
forwards a stop asked while the child is still loading, and waits. A trainer records its
own end (completed, stopped, failed with the reason); where it could not, the supervisor
does: killed by the kernel for lack of memory (the memory cgroup's ``oom_kill`` count
rose), crashed, or over this server's memory cap for a job (``LMLAB_JOB_MEMORY_MB``) leaves
the run ``failed`` with that reason; a plain SIGKILL (a person, a restart) leaves it
``interrupted`` and resumable. Then it starts whatever waits in the queue and keeps the disk
budget (public mode). It imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lmcore import device, runs
from lmcore.jobs import public, queue


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _watch_memory(proc: subprocess.Popen, cap_mb: float, verdict: dict) -> None:
    """Kill the trainer once it holds more than ``cap_mb`` of memory, and say so."""
    while proc.poll() is None:
        used = _rss_mb(proc.pid)
        if used > cap_mb:
            verdict["reason"] = (
                f"out of memory: the training process used {used:,.0f} MB, more than the {cap_mb:,.0f} MB "
                "this server allows a job (LMLAB_JOB_MEMORY_MB); lower the batch size or the block "
                "size, or choose a smaller model"
            )
            proc.kill()
            return
        time.sleep(0.25)


def _why_it_ended(returncode: int, verdict: dict, oom_before: int | None) -> str | None:
    """The reason to record for a trainer that ended without recording one itself, or None."""
    if verdict.get("reason"):
        return verdict["reason"]
    if returncode >= 0:
        return None
    if verdict.get("stopped"):
        return "stopped before training began"
    after = device.oom_kills()
    if oom_before is not None and after is not None and after > oom_before:
        return (
            "out of memory: the system stopped the training process (the kernel's out-of-memory "
            "killer); lower the batch size or the block size, or choose a smaller model"
        )
    if returncode == -signal.SIGKILL:
        return None  # killed by a person or a restart: interrupted, and resumable
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"the training process crashed ({name}); its last checkpoint is kept"


def _record_end(root: Path, run_id: str, reason: str) -> None:
    """Write ``reason`` where the job's readers look: the run's status, else the job's log."""
    run_dir = root / run_id
    if (run_dir / runs.STATUS).is_file() and runs.read_status(run_dir).get("status") == "interrupted":
        runs.write_status(run_dir, "failed", message=reason)
    elif not (run_dir / runs.STATUS).is_file():
        with open(queue.log_path(root, run_id), "a", encoding="utf-8") as log:
            log.write(f"error: {reason}\n")


def _trainer(argv: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LMLAB_JOB_PHASES": "1"}
    return subprocess.Popen([sys.executable, "-m", "lmcore", *argv], env=env, **kwargs)


def spare(root: Path) -> int:
    """A warm trainer: start ``python -m lmcore run -`` (TensorFlow imported, waiting for a
    job on its input), wait until the job layer hands this process a job
    (:func:`lmcore.jobs.queue.claim_spare`), then supervise that job as any other."""
    proc = _trainer(["run", "-", "--runs-dir", str(root)], stdin=subprocess.PIPE, text=True)
    claim = queue.spare_file(root, "claim")
    idle = time.time() + float(os.environ.get("LMLAB_WARM_TRAINER_IDLE_S") or 1800)
    while proc.poll() is None and not claim.is_file() and time.time() < idle:
        time.sleep(0.1)
    with queue.lock(root):  # a job handed over now, or none: the waiting ends here
        if not claim.is_file():
            queue.spare_file(root, "pid").unlink(missing_ok=True)
    handed = runs.read_json(claim) if claim.is_file() else None
    claim.unlink(missing_ok=True)
    if proc.poll() is not None or not handed:  # ended before a job came: nothing to do
        proc.kill()
        return 1
    run_id = runs.check_run_id(handed["run_id"])
    log = queue.log_path(root, run_id)
    with open(log, handed.get("mode", "wb")) as f:  # from now on this process is the job's
        os.dup2(f.fileno(), sys.stdout.fileno())
        os.dup2(f.fileno(), sys.stderr.fileno())
    os.environ.update({str(k): str(v) for k, v in (handed.get("env") or {}).items()})
    print("phase: starting the trainer (warm: TensorFlow already loaded)", flush=True)
    spec = queue.job_file(root, run_id, "spec.json")
    proc.stdin.write(json.dumps({"spec": str(spec), "log": str(log), "env": handed.get("env") or {}}) + "\n")
    proc.stdin.close()
    return supervise(root, run_id, proc)


def supervise(root: Path, run_id: str, proc: subprocess.Popen | None = None) -> int:
    """Run the job's spec (``python -m lmcore run SPEC``, or the warm trainer ``proc`` it was
    handed to) to its end; record why it ended if it could not; then start whatever waits in
    the queue, keep the disk budget and a warm trainer. Returns its exit status."""
    verdict: dict = {}
    child: list[subprocess.Popen] = []

    def forward(sig, _frame):  # a stop while loading reaches the trainer
        verdict["stopped"] = True
        if child:
            child[0].send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    oom_before = device.oom_kills()
    if proc is None:
        print("phase: starting the trainer", flush=True)
        argv = ["run", str(queue.job_file(root, run_id, "spec.json")), "--runs-dir", str(root)]
        proc = _trainer(argv, stdin=subprocess.DEVNULL)
    child.append(proc)
    if verdict.get("stopped"):
        proc.terminate()
    cap = float(os.environ.get("LMLAB_JOB_MEMORY_MB") or 0)
    if cap > 0:
        threading.Thread(target=_watch_memory, args=(proc, cap, verdict), daemon=True).start()
    returncode = proc.wait()
    reason = _why_it_ended(returncode, verdict, oom_before)
    if reason:
        _record_end(root, run_id, reason)
    with contextlib.suppress(OSError, ValueError):  # no longer training: readers see the run's own status
        if int(queue.job_file(root, run_id, "pid").read_text()) == os.getpid():
            queue.job_file(root, run_id, "pid").unlink()
    steps = (queue.dispatch, lambda r: queue.make_room(r, public.Policy.from_settings()), queue.keep_spare)
    for step in steps:
        try:
            step(root)
        except Exception as err:  # the next reader of the queue does it instead
            print(f"note: after the job: {err}", file=sys.stderr)
    return returncode if returncode >= 0 else 1


def main(argv: list[str]) -> int:
    """``python -m lmcore.jobs.supervisor ROOT RUN_ID``: supervise the job's spec;
    ``ROOT --spare``: be the warm trainer the next job is handed to."""
    if argv[1] == "--spare":
        return spare(Path(argv[0]))
    return supervise(Path(argv[0]), runs.check_run_id(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
