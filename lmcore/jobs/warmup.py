"""The server's warm-up of the compilation cache: once per cache, at the lowest priority.

A fresh server's first run compiles its steps (about 10 s on 2 cores) before its curve moves.
At the dashboard's first visit, :func:`start` runs ``python -m lmcore.jobs.warmup ROOT`` in
the background: it trains Home's quick demo (:func:`demo_spec`) and the Train page's default
run (:func:`default_spec`), each until its first interval, which compiles the validation and
the training step into the cache (:mod:`lmcore.xla_cache`), then ends, leaving no run behind.
(Both are needed: the learning-rate schedule's span is a constant of the compiled step, so
the demo's 300 steps and the default's 700 are two training steps.) A ``warmed-<hash>`` mark
per run in the cache's folder makes it happen once per cache (a TensorFlow upgrade or a
changed default is a new hash). It starts only where a job fits beside it (the warm trainer's
memory check), and it gives way at once, publishing nothing, when any job starts or queues: it
never slows a run.
``LMLAB_WARM_CACHE=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from lmcore import runs, xla_cache
from lmcore.jobs import queue, specs
from lmcore.nn.config import DEFAULT_MODEL, DataConfig, form_steps, make_config, make_train_config
from lmcore.text import corpus, tokenizers


def default_spec(step_cap: int | None = None) -> specs.TrainSpec:
    """The run the Train page starts when nothing is changed (``step_cap``: a public server's)."""
    recipe, steps = make_train_config(DEFAULT_MODEL), form_steps(DEFAULT_MODEL)
    return specs.TrainSpec(
        DEFAULT_MODEL,
        DataConfig(corpus.BUILTIN_SOURCES[0], tokenizers.KINDS[0]),
        replace(recipe, steps=min(steps, step_cap or steps)),
        block_size=make_config(DEFAULT_MODEL).block_size,
    )


# Home's quick demo: the default run, shortened. At 300 steps modern-nano reaches a validation
# loss near 1.2 nats per character on Python's documentation (words and code shapes in its
# samples); BENCHMARKS.md has its time from the click.
DEMO_STEPS = 300
DEMO_NAME = "quick-demo"


def demo_spec(step_cap: int | None = None) -> specs.TrainSpec:
    """Home's quick demo: :func:`default_spec` with :data:`DEMO_STEPS` (within ``step_cap``)."""
    spec = default_spec(step_cap)
    return replace(spec, train=replace(spec.train, steps=min(DEMO_STEPS, spec.train.steps)), name=DEMO_NAME)


def warmed_specs(step_cap: int | None = None) -> list[specs.TrainSpec]:
    """What the warm-up compiles, the likelier first click first: the demo, then the default."""
    return [demo_spec(step_cap), default_spec(step_cap)]


def _files(root: Path) -> tuple[Path, Path, Path]:
    """Its pid file, log and scratch runs folder, in the jobs folder (no job list counts them)."""
    folder = runs.jobs_dir(root)
    return folder / "_warmup.pid", folder / "_warmup.log", folder / "_warmup-runs"


def mark(spec: specs.TrainSpec) -> Path | None:
    """The file that says this cache holds ``spec``'s compiled steps (None: no cache)."""
    base = xla_cache.root()
    if base is None:
        return None
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode()).hexdigest()
    return base / xla_cache.key() / f"warmed-{digest[:12]}"


def _running(root: Path) -> int | None:
    """The pid of ``root``'s warm-up while it runs."""
    return queue.live_pid(_files(root)[0], b"lmcore.jobs.warmup")


def stop(root: Path) -> None:
    """End the warm-up of ``root``'s server if it runs (it publishes nothing)."""
    pid = _running(root)
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(_files(root)[2], ignore_errors=True)  # its work folder goes at the cache's next use


def start(root: Path, step_cap: int | None = None) -> int | None:
    """Warm the cache for the default run in the background, if it is wanted, not yet done,
    not running, and there is room beside a job; its pid, or None."""
    root = Path(root).resolve()
    marks = [mark(spec) for spec in warmed_specs(step_cap)]
    if queue.switched_off("LMLAB_WARM_CACHE") or None in marks or all(m.exists() for m in marks):
        return None
    if not queue.room_beside_a_job():  # never where memory is short
        return None
    with queue.lock(root):
        if _running(root) or queue.active(root) or queue.queued(root):
            return None
        pid_file, log, _ = _files(root)
        args = [str(root)] + ([str(step_cap)] if step_cap else [])
        pid = queue.start_module(root, "lmcore.jobs.warmup", args, log)
        pid_file.write_text(str(pid))
    return pid


def _give_way(root: Path, scratch: Path) -> None:
    """End this process at once when a job starts or queues: the job gets the cores. Nothing
    is published (the cache's next user clears this process's work folder)."""
    while True:
        if queue.active(root) or queue.queued(root):
            print("warm-up: a job started; giving way", flush=True)
            shutil.rmtree(scratch, ignore_errors=True)
            os._exit(0)
        time.sleep(0.5)


def warm(root: Path, step_cap: int | None = None) -> None:
    """Train each of :func:`warmed_specs` not yet marked in a scratch folder until its first
    interval, marking the cache as holding its compiled steps; raises if a run failed."""
    _, _, scratch = _files(root)
    shutil.rmtree(scratch, ignore_errors=True)
    threading.Thread(target=_give_way, args=(root, scratch), daemon=True).start()
    for spec in warmed_specs(step_cap):
        done = mark(spec)
        if done is not None and not done.exists():
            _warm_one(spec, scratch, done)
    print("warm-up: done", flush=True)


def _warm_one(spec: specs.TrainSpec, scratch: Path, done: Path) -> None:
    from lmcore.training import lm, lmdata  # reason: TensorFlow after the cache is enabled

    job = lmdata.prepare(spec.model, spec.data, spec.train, spec.block_size)

    def listener(event: str, record: dict) -> None:
        if event == "log" and "loss" in record:  # the training step has compiled and run: enough
            for run_dir in scratch.iterdir():
                runs.request_stop(run_dir)

    try:
        result = lm.start(job, scratch, "warmup", listener=listener)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result["status"] not in ("stopped", "completed"):
        raise RuntimeError(result.get("message") or result["status"])
    xla_cache.publish()  # what the run has not published itself
    published = xla_cache.status()["published"]
    done.write_text(json.dumps({"entries": published, "time": time.time()}))
    print(f"warm-up: {spec.label()} warmed, {published} compiled steps kept", flush=True)


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    cap = int(argv[1]) if len(argv) > 1 else None
    os.nice(19)  # the lowest priority: anything else on the host goes first
    if xla_cache.enable() is None:
        return 0
    try:
        warm(root, cap)
    except Exception as err:  # noqa: BLE001  # reason: a failed warm-up costs a compilation, nothing more
        print(f"warm-up failed: {type(err).__name__}: {err}", flush=True)
        return 1
    finally:
        _files(root)[0].unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
