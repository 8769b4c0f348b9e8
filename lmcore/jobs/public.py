"""Public mode: the rules a shared server keeps (Streamlit Community Cloud, a classroom).

Off by default: on a laptop every visitor is the owner and nothing is capped. On with
``LMLAB_PUBLIC=1`` or ``public = true`` under ``[lmlab]`` in ``.streamlit/secrets.toml``:

* a run belongs to the browser session that started it; other sessions may look at it, generate
  from it and fine-tune from it (into a run of their own), but not stop, resume or delete it;
  the admin password unlocks everything for one session;
* each session has at most one job queued or running, and a job trains at most ``max_steps``
  steps and ``max_minutes`` minutes (checked by the job layer when it is submitted and by the
  trainer, which stops at the deadline with its checkpoint saved);
* the runs folder and the uploads stay within ``disk_budget_mb``: the oldest finished runs
  that nobody pinned are removed first, each removal recorded in ``<runs>/.evictions.jsonl``.

The caps reach the trainer through its environment (:class:`Limits`), so the command line
keeps them too when a job runs it. Nothing here imports TensorFlow or Streamlit.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from lmcore import LMError, runs

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Policy:
    """What a server allows its visitors; every field can be set under ``[lmlab]`` in secrets
    or by ``LMLAB_<FIELD>`` in the environment (the environment wins)."""

    public: bool = False  # the rules below apply at all
    max_steps: int = 3000  # optimizer steps a job may train
    max_minutes: float = 10.0  # wall-clock minutes a job may train
    disk_budget_mb: float = 1500  # runs folder and uploads together (Community Cloud: a few GB of disk)
    upload_mb: float = 20.0  # largest upload accepted
    uploads_per_session: int = 5  # distinct files one session may upload
    jobs_per_session: int = 1  # jobs one session may have queued or running
    # Jobs waiting at once. With one training slot (two cores) and the default 700-step run at
    # about 2 minutes, the fifth waits about 10 minutes, the longest a job may train; past that
    # a visitor is better told to watch a run or come back than to wait.
    max_queued: int = 5
    admin_password: str = field(default="", repr=False)  # unlocks everything for one session

    @classmethod
    def from_settings(cls, settings: Mapping | None = None, environ: Mapping | None = None) -> Policy:
        """The policy from a ``[lmlab]`` secrets table and the environment; bad values refused."""
        environ = os.environ if environ is None else environ
        values = dict(settings or {})
        for f in fields(cls):
            if f"LMLAB_{f.name.upper()}" in environ:
                values[f.name] = environ[f"LMLAB_{f.name.upper()}"]
        typed = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            raw = values[f.name]
            try:
                if f.type == "bool":
                    typed[f.name] = raw if isinstance(raw, bool) else str(raw).strip().lower() in TRUE
                elif f.type == "str":
                    typed[f.name] = str(raw)
                else:
                    number = (int if f.type == "int" else float)(raw)
                    if not (math.isfinite(number) and number > 0):
                        raise ValueError
                    typed[f.name] = number
            except (TypeError, ValueError):
                raise LMError(f"public mode: {f.name} must be a positive number, not {raw!r}") from None
        return cls(**typed)

    def limits(self) -> Limits:
        """The caps a job of a visitor trains under, starting now."""
        if not self.public:
            return Limits()
        return Limits(self.max_steps, time.time() + 60 * self.max_minutes, self.max_minutes)

    def is_admin(self, password: str) -> bool:
        """Whether ``password`` is the admin password (compared in constant time; none set: no)."""
        if not self.admin_password:
            return False
        return hmac.compare_digest(password.encode(), self.admin_password.encode())


@dataclass(frozen=True)
class Actor:
    """Who asks the job layer for something: a browser session, or the admin.

    ``session`` is the session's private token (never shown); the job layer keeps only its hash.
    """

    session: str | None = None
    admin: bool = False

    @property
    def owner_id(self) -> str | None:
        return hashlib.sha256(self.session.encode()).hexdigest()[:24] if self.session else None


@dataclass(frozen=True)
class Limits:
    """The caps one training process keeps: steps, and a deadline in ``time.time()`` seconds."""

    max_steps: int | None = None
    deadline: float | None = None
    minutes: float | None = None  # the cap the deadline came from, for messages

    @classmethod
    def from_env(cls, environ: Mapping | None = None) -> Limits:
        environ = os.environ if environ is None else environ
        try:
            steps = int(environ["LMLAB_JOB_MAX_STEPS"]) if environ.get("LMLAB_JOB_MAX_STEPS") else None
            deadline = float(environ["LMLAB_JOB_DEADLINE"]) if environ.get("LMLAB_JOB_DEADLINE") else None
            minutes = float(environ["LMLAB_JOB_MINUTES"]) if environ.get("LMLAB_JOB_MINUTES") else None
        except ValueError:
            names = "LMLAB_JOB_MAX_STEPS, LMLAB_JOB_DEADLINE and LMLAB_JOB_MINUTES"
            raise LMError(f"{names} must be numbers") from None
        return cls(steps, deadline, minutes)

    def env(self) -> dict[str, str]:
        """The environment variables that carry these limits to a child process."""
        out = {}
        if self.max_steps is not None:
            out["LMLAB_JOB_MAX_STEPS"] = str(self.max_steps)
        if self.deadline is not None:
            out["LMLAB_JOB_DEADLINE"] = repr(self.deadline)
            out["LMLAB_JOB_MINUTES"] = repr(self.minutes or 0)
        return out

    def check_steps(self, steps: int) -> None:
        if self.max_steps is not None and steps > self.max_steps:
            raise LMError(f"this server trains at most {self.max_steps:,} steps a run, not {steps:,}")

    def time_up(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now or time.time()) >= self.deadline

    def time_up_message(self) -> str:
        return f"stopped at this server's time limit ({self.minutes:g} minutes a job); checkpoint saved"


# ---------------------------------------------------------------------------- pins and the disk budget


def pinned(root: Path) -> set[str]:
    """Run ids the admin pinned: never removed to keep the disk budget."""
    return set((runs.read_json(runs.pins_path(root), {}) or {}).get("pinned", []))


def pin(root: Path, run_id: str, on: bool = True) -> None:
    ids = pinned(root)
    ids = ids | {runs.check_run_id(run_id)} if on else ids - {run_id}
    Path(root).mkdir(parents=True, exist_ok=True)
    runs.write_json(runs.pins_path(root), {"pinned": sorted(ids)})


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def disk_usage(root: Path) -> int:
    """Bytes in the runs folder: runs, uploads and job logs."""
    return _size(Path(root)) if Path(root).is_dir() else 0


def evictions(root: Path) -> list[dict]:
    """The removals made to keep the disk budget, oldest first."""
    return runs.read_jsonl(runs.evictions_path(root))


def keep_budget(root: Path, budget_bytes: int, busy: set[str], in_use: set[Path] = frozenset()) -> list[dict]:
    """Remove the oldest finished runs, then the oldest uploads, until ``root`` fits the budget.

    Never removed: runs in ``busy`` (queued, starting or training), pinned runs, and uploads in
    ``in_use`` (read by a job still to start). Each removal is appended to ``.evictions.jsonl``
    and returned.
    """
    root = Path(root)
    used = disk_usage(root)
    if used <= budget_bytes:
        return []
    keep = busy | pinned(root)
    candidates = []
    for r in runs.list_runs(root):
        if r["run_id"] not in keep and r["status"] != "running":
            candidates.append((r.get("updated") or 0, "run", root / r["run_id"]))
    uploads = runs.uploads_dir(root)
    if uploads.is_dir():
        for folder in uploads.iterdir():
            if not any(Path(p).resolve().is_relative_to(folder.resolve()) for p in in_use):
                candidates.append((folder.stat().st_mtime, "upload", folder))
    removed = []
    for _, kind, path in sorted(candidates, key=lambda c: (c[1] != "run", c[0])):
        if used <= budget_bytes:
            break
        size = _size(path)
        if kind == "run":
            try:
                runs.delete(path)
            except (LMError, OSError):
                continue
        else:
            shutil.rmtree(path, ignore_errors=True)
        used -= size
        record = {
            "time": round(time.time(), 3),
            "kind": kind,
            "name": path.name,
            "bytes": size,
            "budget_bytes": budget_bytes,
        }
        runs.append_jsonl(runs.evictions_path(root), record)
        removed.append(record)
    return removed
