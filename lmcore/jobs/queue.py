"""Background training jobs: a job spec run by ``python -m lmcore`` in a child process.

The dashboard never trains in its own process: it hands this module a job spec
(:mod:`lmcore.jobs.specs`: the same typed record the command line builds from its options),
which runs as ``python -m lmcore run SPEC`` under a small supervisor (``python -m
lmcore.jobs.supervisor``) in a new session, so reruns, closed tabs and server restarts leave it
running, and then follows the run through its folder. Until the run folder exists (the
corpus is still loading, or the input was refused) the job is described by its log file in
``<runs dir>/.jobs/<run id>.log``.

At most :func:`max_jobs` jobs train at once per runs directory (``LMLAB_MAX_JOBS``, by
default half the CPU cores, at least one): more share the cores and each goes slower, and
their memory adds up. Jobs beyond the limit wait in a queue that lives in the runs
directory, so every session and a restarted server see the same one::

    <runs dir>/.jobs/<id>.spec.json  what the job runs (a job spec)
    <runs dir>/.jobs/<id>.queued   its place in the queue, while it waits
    <runs dir>/.jobs/<id>.pid      its supervisor's process, once started
    <runs dir>/.jobs/<id>.owner    the session that submitted it (public mode)
    <runs dir>/.jobs/queue.lock    held while the queue or the set of started jobs changes

A job leaves the queue and gets its pid file inside one hold of the lock, so a reader that
finds neither takes the lock once before it calls the job failed (:func:`state`).

A queued job starts when a slot frees: the supervisor of a finishing job starts the next
one, and anyone reading a job's state (:func:`state`, which the dashboard polls) does the
same, so a job that was killed without finishing does not hold the queue up either. Its
supervisor (:mod:`lmcore.jobs.supervisor`) also says why a job ended when the trainer could not.

In public mode (:mod:`lmcore.jobs.public`) every call that changes a job takes the
:class:`~lmcore.jobs.public.Actor` asking and the :class:`~lmcore.jobs.public.Policy`, and refuses what
the policy does not allow that actor.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lmcore
from lmcore import LMError, device, runs
from lmcore.jobs import eta, public, specs

TERMINAL = ("completed", "stopped", "failed", "interrupted", "evicted")  # a job's states once it is over
PACKAGE_ROOT = Path(lmcore.__file__).resolve().parents[1]  # the folder that holds lmcore/, for the child
PRIVATE = public.Policy()  # a laptop: every visitor may do everything, nothing is capped


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
    return runs.jobs_dir(root)


def job_file(root: Path, run_id: str, suffix: str) -> Path:
    """A job's file in ``<runs dir>/.jobs/``: ``<id>.<suffix>`` (log, pid, owner, queued, spec.json)."""
    return _jobs_dir(root) / f"{runs.check_run_id(run_id)}.{suffix}"


def log_path(root: Path, run_id: str) -> Path:
    return job_file(root, run_id, "log")


@contextlib.contextmanager
def lock(root: Path):
    """One process at a time decides what starts (sessions, servers and finishing jobs alike)."""
    _jobs_dir(root).mkdir(parents=True, exist_ok=True)
    with open(_jobs_dir(root) / "queue.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _spawn(root: Path, run_id: str, mode: str, env: dict[str, str]) -> None:
    """Hand the job to the warm trainer if one waits, else start ``python -m
    lmcore.jobs.supervisor ROOT ID`` (the job's spec under its supervisor); call it holding
    the queue lock, so that no reader sees the job neither queued nor started."""
    root = root.resolve()  # the child runs elsewhere; a relative runs dir would point elsewhere too
    pid = claim_spare(root, run_id, mode, env) or _start(root, [run_id], log_path(root, run_id), mode, env)
    runs.atomic_write(job_file(root, run_id, "pid"), lambda p: p.write_text(str(pid)))


# What a job's environment carries of its own (:func:`_admit`): never passed on to a warm
# trainer, which gets the next job's own with the job.
JOB_ENV = (
    "LMLAB_PUBLIC",
    "LMLAB_DISK_BUDGET_MB",
    "LMLAB_JOB_MAX_STEPS",
    "LMLAB_JOB_DEADLINE",
    "LMLAB_JOB_MINUTES",
)


def _start(root: Path, args: list[str], log: Path, mode: str, env: dict[str, str]) -> int:
    """Start ``python -m lmcore.jobs.supervisor ROOT *args`` in a session of its own; its pid."""
    return start_module(root, "lmcore.jobs.supervisor", [str(root), *args], log, mode, env)


def start_module(
    root: Path, module: str, args: list[str], log: Path, mode: str = "wb", env: dict[str, str] | None = None
) -> int:
    """Start ``python -m MODULE *args`` in a session of its own, from the folder that holds
    lmcore, without a finished job's caps, its output in ``log``; its pid."""
    _jobs_dir(root).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", module, *args]
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    base = {k: v for k, v in os.environ.items() if k not in JOB_ENV}  # a finished job's caps stay behind
    with open(log, mode) as f:
        proc = subprocess.Popen(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**base, **(env or {}), "PYTHONPATH": path},
            cwd=PACKAGE_ROOT,
            start_new_session=True,
        )
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends
    return proc.pid


# ---------------------------------------------------------------------------- the warm trainer

SPARE_BYTES = 450 * 2**20  # a waiting trainer: Python, TensorFlow and Keras imported (measured)
JOB_BYTES = 1300 * 2**20  # the dashboard's default job beside it (BENCHMARKS.md: 1,228 MB resident)


def spare_file(root: Path, suffix: str) -> Path:
    """The warm trainer's files in ``.jobs/``: ``_spare.pid`` while it waits, ``_spare.claim``
    once a job is handed to it, ``_spare.log`` its output until then."""
    return _jobs_dir(root) / f"_spare.{suffix}"  # not a run id, so no job list counts it


def code_stamp() -> str:
    """The newest change to lmcore's code: a warm trainer started before it would run old code."""
    return repr(max(p.stat().st_mtime_ns for p in (PACKAGE_ROOT / "lmcore").rglob("*.py")))


def _spare_alive(root: Path) -> int | None:
    try:
        pid = int((runs.read_json(spare_file(root, "pid"), {}) or {})["pid"])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            ours = b"--spare" in f.read()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if ours and runs.process_alive(pid) else None


def claim_spare(root: Path, run_id: str, mode: str, env: dict[str, str]) -> int | None:
    """Hand job ``run_id`` to the waiting warm trainer, if there is one (under the queue
    lock); returns its supervisor's pid, which is now the job's. One started before lmcore's
    code last changed is ended instead, and the job starts cold."""
    pid = _spare_alive(root)
    if pid is None or spare_file(root, "claim").exists():
        return None
    if (runs.read_json(spare_file(root, "pid"), {}) or {}).get("code") != code_stamp():
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)  # its session: the supervisor and its waiting trainer
        spare_file(root, "pid").unlink(missing_ok=True)
        return None
    runs.write_json(spare_file(root, "claim"), {"run_id": run_id, "mode": mode, "env": env})
    spare_file(root, "pid").unlink(missing_ok=True)
    return pid


def spare_wanted() -> bool:
    """A warm trainer is kept unless turned off (``LMLAB_WARM_TRAINER=0``) or where it would
    not fit beside a job in the memory this host (or its container) has left. It waits at
    most ``LMLAB_WARM_TRAINER_IDLE_S`` seconds (default 1,800) for a job, then ends."""
    return not switched_off("LMLAB_WARM_TRAINER") and room_beside_a_job()


def switched_off(var: str) -> bool:
    """Whether the environment turns a background helper off (``VAR=0``, ``off``, ``no``, ``false``)."""
    return os.environ.get(var, "1").strip().lower() in ("0", "off", "no", "false")


def room_beside_a_job() -> bool:
    """Whether a waiting trainer (or the cache's warm-up, about as big) fits beside a job in
    the memory this host (or its container) has left."""
    have, _ = device.available_memory()
    return have >= SPARE_BYTES + JOB_BYTES


def keep_spare(root: Path) -> int | None:
    """Start a warm trainer for ``root``'s next job if none waits and memory allows; its pid."""
    root = Path(root).resolve()
    if not spare_wanted():
        return None
    with lock(root):
        if _spare_alive(root) or spare_file(root, "claim").exists():
            return None
        pid = _start(root, ["--spare"], spare_file(root, "log"), "wb", {})
        runs.write_json(spare_file(root, "pid"), {"pid": pid, "code": code_stamp(), "time": time.time()})
    return pid


# ---------------------------------------------------------------------------- who may do what


def owner(root: Path, run_id: str) -> str | None:
    """The owner id of the session that submitted job ``run_id`` (None: not a session's job)."""
    return (runs.read_json(job_file(root, run_id, "owner"), {}) or {}).get("owner")


def may_manage(root: Path, run_id: str, actor: public.Actor | None, policy: public.Policy | None) -> bool:
    """Whether ``actor`` may stop, resume, cancel or delete ``run_id`` under ``policy``."""
    policy = policy or PRIVATE
    if not policy.public or (actor is not None and actor.admin):
        return True
    return actor is not None and actor.owner_id is not None and owner(root, run_id) == actor.owner_id


def _check_manage(root, run_id, actor, policy, action: str) -> None:
    if not may_manage(root, run_id, actor, policy):
        raise LMError(f"only the session that started {run_id} (or the admin) can {action} it")


def owned_jobs(root: Path, owner_id: str) -> list[str]:
    """Queued and running jobs that ``owner_id``'s session submitted."""
    return [j for j in [*queued(root), *active(root)] if owner(root, j) == owner_id]


def _admit(root: Path, spec: specs.Spec, actor, policy: public.Policy) -> dict[str, str]:
    """Check a new job against ``policy``; returns the environment carrying its caps."""
    if not policy.public:
        return {}
    env = {"LMLAB_PUBLIC": "1", "LMLAB_DISK_BUDGET_MB": str(policy.disk_budget_mb)}  # for the supervisor
    if actor is not None and actor.admin:
        return env
    if actor is None or actor.owner_id is None:
        raise LMError("in public mode a job needs the session that asks for it")
    mine = owned_jobs(root, actor.owner_id)
    if len(mine) >= policy.jobs_per_session:
        raise LMError(
            f"one job at a time per visitor on this server: {', '.join(mine)} is still queued or "
            "training; stop it or wait for it to finish"
        )
    waiting = queued(root)
    if len(waiting) >= policy.max_queued:
        start = starts_in(root, waiting[0])
        when = f"in about {math.ceil(start / 60)} minutes" if start is not None else "in a few minutes"
        raise LMError(
            f"the queue is full: {len(waiting)} {'job is' if len(waiting) == 1 else 'jobs are'} waiting "
            "for a training slot. Watch a run in "
            f"progress (Train page, Follow a run) or generate from a finished one, or come back {when}, "
            "when the first of them has started"
        )
    limits = policy.limits()
    if spec.steps is not None:  # steps from epochs are checked by the trainer, once known
        limits.check_steps(spec.steps)
    return {**env, **limits.env()}


def submit(
    root: Path,
    run_id: str,
    spec: specs.Spec,
    mode: str = "wb",
    actor: public.Actor | None = None,
    policy: public.Policy | None = None,
    join: bool = False,
) -> str:
    """Run ``spec`` (a job spec) as job ``run_id``: now if a slot
    is free and nobody waits, else at the end of the queue. Returns ``run_id``, or with
    ``join`` the id of a :func:`twin` job if there is one (then nothing is submitted).

    ``mode`` is how the job's log is opened: ``"wb"`` for a new job, ``"ab"`` to add to it.
    In public mode the job belongs to ``actor``'s session and trains within ``policy``'s caps.
    """
    runs.check_run_id(run_id)
    root, policy = Path(root), policy or PRIVATE
    spec = specs.with_id(spec, run_id)
    if policy.public:
        make_room(root, policy)
    with lock(root):  # one lock for the look and the submission: a class's clicks make one job
        if join and (found := twin(root, spec)) is not None:
            return found
        if job_file(root, run_id, "queued").exists() or _job_alive(root, run_id):
            raise LMError(f"job {run_id} is already queued or running")
        env = _admit(root, spec, actor, policy)
        specs.save(spec, job_file(root, run_id, "spec.json"))
        if actor is not None and actor.owner_id and not (root / run_id).is_dir():
            runs.write_json(job_file(root, run_id, "owner"), {"owner": actor.owner_id, "time": time.time()})
        if not queued(root) and len(active(root)) < max_jobs():
            _spawn(root, run_id, mode, env)
        else:
            entry = {"mode": mode, "env": env, "queued": time.time()}
            runs.write_json(job_file(root, run_id, "queued"), entry)
    return run_id


def launch(
    root: Path,
    spec: specs.Spec,
    name: str | None = None,
    model: str | None = None,
    actor: public.Actor | None = None,
    policy: public.Policy | None = None,
) -> str:
    """Start (or queue) a new run of a job spec; returns its id
    (``<time>-<name, model or the spec's label>-<hex>``)."""
    run_id = runs.new_run_id(model or spec.label(), name)
    return submit(root, run_id, spec, "wb", actor, policy)


def launch_or_join(
    root: Path,
    spec: specs.Spec,
    actor: public.Actor | None = None,
    policy: public.Policy | None = None,
) -> tuple[str, bool]:
    """:func:`launch`, except that in public mode a job identical to one queued, training or
    completed (:func:`twin`) is not trained again: returns (the run's id, whether it is that
    other job's). A class that presses the same button at once trains one model."""
    policy = policy or PRIVATE
    run_id = runs.new_run_id(spec.label())
    found = submit(root, run_id, spec, "wb", actor, policy, join=policy.public)
    return found, found != run_id


def twin(root: Path, spec: specs.Spec) -> str | None:
    """The newest job that makes the same model as ``spec`` (:func:`lmcore.jobs.specs.fingerprint`:
    the same corpus, model, settings and seed) and is queued, training or completed; None if none."""
    key = specs.fingerprint(spec)
    folder = _jobs_dir(Path(root))
    if key is None or not folder.is_dir():
        return None
    busy = {*queued(root), *active(root)}
    for path in sorted(folder.glob("*.spec.json"), reverse=True):  # ids start with their time
        run_id = path.name.removesuffix(".spec.json")
        if not runs.RUN_ID.match(run_id):
            continue
        try:
            if specs.fingerprint(specs.load(path)) != key:
                continue
        except LMError:
            continue
        status = runs.read_status(root / run_id) if (root / run_id / runs.STATUS).is_file() else {}
        if run_id in busy or status.get("status") == "completed":
            return run_id
    return None


def starts_in(root: Path, run_id: str) -> float | None:
    """Estimated seconds until queued job ``run_id`` starts (:mod:`lmcore.jobs.eta`); None if
    it is not queued or nothing has been measured yet."""
    root = Path(root)
    waiting = queued(root)
    if run_id not in waiting:
        return None
    running = [r for r in active(root) if r not in waiting]
    ahead = [job_steps(root, a) for a in waiting[: waiting.index(run_id)]]
    return eta.seconds_to_start(root, running, ahead, max_jobs(), lambda r: job_steps(root, r))


def job_steps(root: Path, run_id: str) -> int | None:
    """The steps a job will train, from its spec (None if it does not say, as with epochs)."""
    try:
        return specs.load(job_file(root, run_id, "spec.json")).steps
    except LMError:
        return None


def resume(
    root: Path,
    run_id: str,
    steps: int | None = None,
    actor: public.Actor | None = None,
    policy: public.Policy | None = None,
) -> None:
    """Continue a stopped or interrupted run in a child process (or queue it)."""
    _check_manage(root, run_id, actor, policy, "resume")
    submit(root, run_id, specs.ResumeSpec(run_id, steps), "ab", actor, policy)


def live_pid(pid_file: Path, marker: bytes = b"lmcore") -> int | None:
    """The pid that ``pid_file`` names, if that process runs and is ours (its command line
    holds ``marker``: a reused pid is some other program), else None."""
    try:
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            ours = marker in f.read()
    except (OSError, ValueError):
        return None
    return pid if ours and pid != os.getpid() and runs.process_alive(pid) else None


def _job_alive(root: Path, run_id: str) -> bool:
    return live_pid(job_file(root, run_id, "pid")) is not None


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
    with lock(root):
        for run_id in queued(root):
            if len(active(root)) >= max_jobs():
                break
            entry = runs.read_json(job_file(root, run_id, "queued"))
            job_file(root, run_id, "queued").unlink(missing_ok=True)
            if entry and job_file(root, run_id, "spec.json").is_file():
                env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
                if "LMLAB_JOB_MINUTES" in env:  # the time cap counts from the start, not the queueing
                    env["LMLAB_JOB_DEADLINE"] = repr(time.time() + 60 * float(env["LMLAB_JOB_MINUTES"]))
                _spawn(root, run_id, entry.get("mode", "wb"), env)
                started.append(run_id)
    return started


def _last_line(root: Path, run_id: str, prefix: str) -> str | None:
    """The last ``prefix`` line of the job's log, without the prefix (``error: ``, ``phase: ``)."""
    log = log_path(root, run_id)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    found = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    return found[-1] if found else None


def _last_error(root: Path, run_id: str) -> str | None:
    return _last_line(root, run_id, "error: ")


def state(root: Path, run_id: str) -> dict:
    """The job's state.

    ``queued`` (with its ``position`` in the queue and the number of ``slots``) while it
    waits; then the run's own status once its folder exists, except that a job still
    loading (a new run, or a resume) reads ``starting``; before the folder exists,
    ``starting`` while its process runs, and ``failed`` with the error line from the job's
    log once the process has ended without making a run. A resume that failed before
    training leaves the run as it was, with ``job_error`` saying why.
    """
    root = Path(root)
    dispatch(root)
    found = _state(root, run_id)
    if found["status"] == "failed" and not (root / run_id / runs.STATUS).is_file():
        # Neither queued nor started: it may be between the two, which happens under the lock.
        with lock(root):
            found = _state(root, run_id)
    return found


def _state(root: Path, run_id: str) -> dict:
    run_dir = root / runs.check_run_id(run_id)
    waiting = queued(root)
    if run_id in waiting:
        base = runs.read_status(run_dir) if (run_dir / runs.STATUS).is_file() else {"step": 0}
        return {
            **base,
            "status": "queued",
            "position": waiting.index(run_id) + 1,
            "queue_length": len(waiting),
            "slots": max_jobs(),
        }
    alive = _job_alive(root, run_id)
    if (run_dir / runs.STATUS).is_file():
        status = runs.read_status(run_dir)
        pid_file = job_file(root, run_id, "pid")
        started_after = (
            pid_file.is_file() and pid_file.stat().st_mtime > (run_dir / runs.STATUS).stat().st_mtime
        )
        if status.get("status") != "running" and alive and started_after:  # a resume still loading
            return {**status, "status": "starting"}
        log = log_path(root, run_id)
        if not alive and log.is_file() and log.stat().st_mtime > (run_dir / runs.STATUS).stat().st_mtime:
            error = _last_error(root, run_id)
            if error:
                status["job_error"] = error
        return status
    if alive:  # what it is doing, as the job's log says (lmcore.runner.phase)
        return {"status": "starting", "step": 0, "phase": _last_line(root, run_id, "phase: ")}
    evicted = [e for e in public.evictions(root) if e.get("kind") == "run" and e.get("name") == run_id]
    if evicted:
        return {"status": "evicted", "message": "removed to keep the server's disk budget", **evicted[-1]}
    error = _last_error(root, run_id)
    if error is None and log_path(root, run_id).is_file():
        error = log_path(root, run_id).read_text(encoding="utf-8", errors="replace").strip()[-300:]
    return {"status": "failed", "step": 0, "message": error or "the job did not start"}


def stop(
    root: Path, run_id: str, actor: public.Actor | None = None, policy: public.Policy | None = None
) -> None:
    """Ask a job to stop: a queued one leaves the queue; a training one through its run
    folder (checkpoint saved); one still loading, with no run folder yet, by ending its process."""
    root = Path(root)
    _check_manage(root, run_id, actor, policy, "stop")
    run_dir = root / runs.check_run_id(run_id)
    with lock(root):
        if job_file(root, run_id, "queued").exists():
            job_file(root, run_id, "queued").unlink()
            with open(log_path(root, run_id), "a", encoding="utf-8") as log:
                log.write("error: cancelled while waiting in the queue\n")
            return
    if run_dir.is_dir():
        runs.request_stop(run_dir)
    elif _job_alive(root, run_id):
        os.kill(int(job_file(root, run_id, "pid").read_text()), signal.SIGTERM)


def delete(
    root: Path, run_id: str, actor: public.Actor | None = None, policy: public.Policy | None = None
) -> None:
    """Remove a run that is not training, with its job's files."""
    root = Path(root)
    _check_manage(root, run_id, actor, policy, "delete")
    runs.delete(root / runs.check_run_id(run_id))
    for suffix in ("log", "pid", "owner", "spec.json"):
        job_file(root, run_id, suffix).unlink(missing_ok=True)
    if run_id in public.pinned(root):
        public.pin(root, run_id, on=False)


def make_room(root: Path, policy: public.Policy) -> list[dict]:
    """Keep ``root`` within the policy's disk budget (public mode), sparing unfinished jobs."""
    if not policy.public:
        return []
    with lock(root):
        busy = set(queued(root)) | set(active(root))
        in_use = set()
        for run_id in queued(root):  # an upload a waiting job will read
            spec = runs.read_json(job_file(root, run_id, "spec.json"), {}) or {}
            in_use |= {Path(str(v)) for v in _values(spec) if "/.uploads/" in str(v)}
        removed = public.keep_budget(root, int(policy.disk_budget_mb * 2**20), busy, in_use)
        for record in removed:
            if record["kind"] == "run":
                for suffix in ("pid", "owner"):
                    job_file(root, record["name"], suffix).unlink(missing_ok=True)
    return removed


def _values(data):
    """Every leaf value of nested dicts and lists."""
    if isinstance(data, dict):
        return [v for x in data.values() for v in _values(x)]
    if isinstance(data, list):
        return [v for x in data for v in _values(x)]
    return [data]


def log_tail(root: Path, run_id: str, lines: int = 20) -> str:
    log = log_path(root, run_id)
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
