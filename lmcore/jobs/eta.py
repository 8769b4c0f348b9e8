"""When a queued job should start, from the measured pace of the jobs ahead of it.

Each job training now frees its slot after its steps left at its own measured pace (steps per
second over its last records). Each job waiting ahead then takes the first slot to free, for
its steps at the pace measured on this server (the mean of the jobs training now, else of the
newest finished runs), plus the start-up every job pays before its first step. None when
nothing has been measured yet: an estimate from no figure would be a guess.

The job layer (:func:`lmcore.jobs.queue.starts_in`) hands it what it knows of the queue, so
that the queue can also use it to say when a full queue has room again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from pathlib import Path

from lmcore import runs

STARTUP_S = 12.0  # a job's start-up before its first step (BENCHMARKS.md: 9.0 s warm, 11.8 s cold)
RECENT = 5  # finished runs whose pace stands in when nothing trains now


def pace(run_dir: Path) -> float | None:
    """Steps per second over the run's last trained records (None: under two of them)."""
    trained = [m for m in runs.read_jsonl(run_dir / runs.METRICS) if "loss" in m and "time" in m][-6:]
    if len(trained) < 2 or trained[-1]["time"] <= trained[0]["time"]:
        return None
    return (trained[-1]["step"] - trained[0]["step"]) / (trained[-1]["time"] - trained[0]["time"])


def _server_pace(root: Path, running: list[str]) -> float | None:
    paces = [p for p in (pace(root / r) for r in running) if p]
    if not paces:  # nothing trains now: the newest finished runs'
        done = [r for r in runs.list_runs(root) if r["status"] == "completed"][:RECENT]
        paces = [p for p in (pace(Path(r["path"])) for r in done) if p]
    return sum(paces) / len(paces) if paces else None


def seconds_to_start(
    root: Path, running: list[str], ahead: list[int | None], slots: int, planned: Callable[[str], int | None]
) -> float | None:
    """Estimated seconds until a queued job starts, given the jobs ``running`` now in ``slots``
    training slots and the steps of each job waiting ``ahead`` of it (``planned(run_id)``: a
    job's steps from its spec, for a job whose run folder does not exist yet); None where a
    figure is missing (no pace measured, a job's steps unknown)."""
    rate = _server_pace(root, running)
    if rate is None:
        return None
    free = []  # when each slot frees, from now
    for r in running:
        status = runs.read_status(root / r) if (root / r / runs.STATUS).is_file() else {}
        record = runs.read_record(root / r) if (root / r).is_dir() else None
        total = record.train.steps if record is not None else planned(r)
        step = int(status.get("step") or 0)
        if total is None:
            return None
        left = max(total - step, 0) / (pace(root / r) or rate)
        free.append(left + (STARTUP_S if status.get("status") != "running" else 0.0))
    free += [0.0] * max(slots - len(free), 0)
    heapq.heapify(free)
    for steps in ahead:
        if steps is None:
            return None
        heapq.heappush(free, heapq.heappop(free) + STARTUP_S + steps / rate)
    return free[0]
