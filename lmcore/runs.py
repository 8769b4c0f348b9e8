"""The run store: one folder per training run, the interface between trainer and readers.

Layout of ``<runs dir>/<run id>/``::

    config.json        the run's record (:class:`RunRecord`): model, training and data
                       settings, lineage, device; a model is rebuilt from it alone
    tokenizer.json     the run's tokenizer
    corpus.txt         the cleaned text, for sources that cannot be loaded again (uploads,
                       files, URLs); built-in corpora are reloaded and checked by SHA-256
    status.json        running | completed | stopped | failed (+ message), step, best loss;
                       rewritten atomically, so a reader never sees half of it
    metrics.jsonl      append-only, one JSON object per logged interval: its means, the
                       validation when there was one, and each step's loss and learning rate
                       (``step_losses``, ``step_lr``; see :func:`per_step`)
    samples.jsonl      append-only, the text generated at each validation
    checkpoints/       last.keras and best.keras, each written to a temporary name first
                       and then renamed, so a crash never leaves a partial file under
                       the final name
    tb/                TensorBoard event files (``tensorboard --logdir runs``)
    STOP               present while a stop has been requested

A run whose status says ``running`` but whose process is gone is reported as
``interrupted`` (resumable). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import lmcore
from lmcore import LMError
from lmcore.nn.config import (
    DataConfig,
    GPTConfig,
    RNNConfig,
    TrainConfig,
    config_from_dict,
    train_config_from_dict,
)

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STATUSES = ("running", "completed", "stopped", "failed", "interrupted")


def runs_dir(path: str | os.PathLike | None = None) -> Path:
    """The runs directory: ``path``, else ``$LMLAB_RUNS_DIR``, else ``./runs``."""
    return Path(path or os.environ.get("LMLAB_RUNS_DIR") or "runs")


def check_run_id(run_id: str) -> str:
    """Refuse ids that could leave the runs directory or are not plain names."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or ".." in run_id:
        raise LMError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    return run_id


def new_run_id(model: str, name: str | None = None) -> str:
    """A sortable, unique id: ``YYYYmmdd-HHMMSS-<name or model>-<8 hex>``. Eight hex digits:
    with four, twenty ids made in one second collided about once in 340 tries (a run refused
    as "already exists", and a flaky test)."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", name or model).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-{secrets.token_hex(4)}"


def create(root: Path, run_id: str) -> Path:
    """Make the folder of a new run; refuses an id that already exists."""
    check_run_id(run_id)
    root.mkdir(parents=True, exist_ok=True)
    path = root / run_id
    try:
        path.mkdir()
    except FileExistsError:
        raise LMError(f"a run named {run_id!r} already exists in {root}") from None
    (path / CHECKPOINTS).mkdir()
    return path


def resolve(run: str, root: Path) -> Path:
    """A run folder from a run id (looked up in ``root``) or from a folder's path."""
    if "\x00" in run:
        raise LMError("invalid run id: it contains a NUL byte")
    path = Path(run)
    if os.sep in run or (os.altsep and os.altsep in run) or not RUN_ID.match(run):
        if not has_record(path):
            raise LMError(f"no run at {run!r} (a run id, or a run folder with {CONFIG})")
        return path
    path = root / check_run_id(run)
    if not has_record(path):
        raise LMError(f"no run {run!r} in {root}")
    return path


# ---------------------------------------------------------------------------- files


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s suffix (Keras insists on ``.keras``). A crash at
    any moment leaves either the old file or the new one under the final name.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other readers
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_partial_files(folder: Path) -> list[str]:
    """Delete the temporary files of writes that never finished (their process was killed);
    call it only while holding the run's training lock. Returns the names removed."""
    removed = []
    for p in folder.glob(".*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def write_json(path: Path, data) -> None:
    atomic_write(
        path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    )


def read_json(path: Path, default=None):
    """The JSON object in ``path``, or ``default`` if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
        return default
    return data if isinstance(data, dict) else default


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record as a whole line (a reader never sees a partial record as complete)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """All complete records; a line still being written (no newline yet) is left for later."""
    try:
        data = path.read_bytes()  # bytes: a line cut inside a multi-byte character is still whole-line safe
    except OSError:
        return []
    return _parse_lines(data)


def _parse_lines(data: bytes) -> list[dict]:
    """The records of ``data``'s complete lines (after its last newline is the next one's start)."""
    records = []
    for line in data.split(b"\n")[:-1]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class _Tail:
    """What :func:`read_appended` has read of one file: its records up to ``offset``."""

    inode: tuple[int, int]
    offset: int  # just after the last complete line read
    guard: bytes  # the bytes just before ``offset``: if they change, the file was rewritten
    records: list[dict]
    lock: threading.Lock = field(default_factory=threading.Lock)


_TAILS: dict[Path, _Tail] = {}
_TAILS_LOCK = threading.Lock()
TAILS_KEPT = 64  # files followed at once, across the whole server


def read_appended(path: Path) -> list[dict]:
    """:func:`read_jsonl` for an append-only file read again and again (a live run's metrics,
    followed by every session watching it): the records already read are kept, process-wide,
    and only the bytes appended since are read and parsed. A file replaced, shortened or
    rewritten under the same size is read whole again. The list returned is the caller's."""
    path = Path(path)
    try:
        st_ = path.stat()
    except OSError:
        return []
    with _TAILS_LOCK:
        tail = _TAILS.pop(path, None)
        if tail is None or tail.inode != (st_.st_dev, st_.st_ino) or st_.st_size < tail.offset:
            tail = _Tail((st_.st_dev, st_.st_ino), 0, b"", [])
        _TAILS[path] = tail  # the newest last: the oldest is dropped first
        while len(_TAILS) > TAILS_KEPT:
            _TAILS.pop(next(iter(_TAILS)))
    with tail.lock:  # one reader of a file at a time; other files are read meanwhile
        for _ in range(2):
            start = tail.offset - len(tail.guard)
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                return []
            if data.startswith(tail.guard):
                break
            tail.offset, tail.guard, tail.records = 0, b"", []  # rewritten in place: read it whole
        end = data.rfind(b"\n", len(tail.guard)) + 1  # a line still being written waits for its newline
        if end > len(tail.guard):
            tail.records.extend(_parse_lines(data[len(tail.guard) : end]))
            tail.offset = start + end
            tail.guard = data[max(end - 64, 0) : end]
        return list(tail.records)


def per_step(records: list[dict]) -> list[dict]:
    """One row a step (``step``, ``time``, ``loss``, ``lr``) from the interval records: each
    step's own loss and rate where the record has them (time shared out over the interval),
    else the interval's mean at its last step (runs from before per-step losses)."""
    rows, last_step, last_time = [], 0, 0.0
    for r in records:
        losses, lrs = r.get("step_losses"), r.get("step_lr")
        if isinstance(losses, list) and losses and "step" in r:  # a table's row has NaN for none
            n = len(losses)
            lrs = lrs if isinstance(lrs, list) and len(lrs) == n else [r.get("lr")] * n
            for i, (loss, lr) in enumerate(zip(losses, lrs, strict=True)):
                frac = (i + 1) / n
                step = r["step"] - n + 1 + i
                rows.append(
                    {
                        "step": step,
                        "time": last_time + frac * (r.get("time", 0) - last_time),
                        "loss": loss,
                        "lr": lr,
                    }
                )
        elif isinstance(r.get("loss"), int | float) and r["loss"] == r["loss"] and "step" in r:  # not NaN
            rows.append({k: r[k] for k in ("step", "time", "loss", "lr") if k in r})
        last_step, last_time = r.get("step", last_step), r.get("time", last_time)
    return rows


# ---------------------------------------------------------------------------- the folders' file names

# A run folder's files, named here once (everything else reads them through these names):
METRICS = "metrics.jsonl"  # one record per logged interval, appended as training goes
SAMPLES = "samples.jsonl"  # a short generated sample at each validation
STATUS = "status.json"  # the run's state, rewritten at each log
CONFIG = "config.json"  # the run's record (:class:`RunRecord`)
TOKENIZER = "tokenizer.json"
CORPUS = "corpus.txt"  # the training text, for a corpus that is not built in
RESULTS = "results.json"  # a classifier's held-out scores
CHECKPOINTS = "checkpoints"  # last.keras, best.keras (a classifier: its model file)
EVENTS = "tb"  # TensorBoard event files
STOP = "STOP"  # present while a stop is asked


# The runs folder's own stores, beside the runs:
def jobs_dir(root: Path) -> Path:
    """The job layer's files (:mod:`lmcore.jobs.queue`): specs, logs, pid files, the queue."""
    return Path(root) / ".jobs"


def uploads_dir(root: Path) -> Path:
    """The dashboard's uploads, where a training child process can read them."""
    return Path(root) / ".uploads"


def comparisons_dir(root: Path) -> Path:
    """The comparison tables (:mod:`lmcore.experiments.compare`), one JSON file each."""
    return Path(root) / ".comparisons"


def pins_path(root: Path) -> Path:
    """The runs the admin pinned (public mode)."""
    return Path(root) / ".pins.json"


def evictions_path(root: Path) -> Path:
    """What public mode removed to keep its disk budget, one record a line."""
    return Path(root) / ".evictions.jsonl"


def read_comparison(root: Path, compare_id: str) -> dict | None:
    return read_json(comparisons_dir(root) / f"{check_run_id(compare_id)}.json", None)


def list_comparisons(root: Path) -> list[dict]:
    """Every comparison's table, newest first."""
    folder = comparisons_dir(root)
    found = [read_json(p, None) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted((c for c in found if c), key=lambda c: c.get("created", ""), reverse=True)


def write_comparison(root: Path, table: dict) -> None:
    comparisons_dir(root).mkdir(parents=True, exist_ok=True)
    write_json(comparisons_dir(root) / f"{check_run_id(table['compare_id'])}.json", table)


# ---------------------------------------------------------------------------- the run's record


@dataclass
class DataRecord:
    """What a run trained on: a language model's corpus and tokens, or a classifier's examples."""

    source: str = "builtin:python-docs"  # corpus (or labeled data) source string
    tokenizer: str = "char"  # char | word | bpe
    vocab_size: int | None = None  # word/bpe vocabulary size asked for (None = default)
    text_column: str | None = None  # for CSV sources
    clean: dict = field(default_factory=dict)  # corpus.CleanOptions fields
    sha256: str | None = None  # the cleaned text's, checked when the corpus is loaded again
    train_tokens: int | None = None
    val_tokens: int | None = None
    train_examples: int | None = None  # a classifier's
    val_examples: int | None = None
    test_examples: int | None = None
    truncated: int | None = None  # texts cut to the block size

    def config(self) -> DataConfig:
        return DataConfig(self.source, self.tokenizer, self.vocab_size, self.text_column, dict(self.clean))


@dataclass
class RunRecord:
    """A run's ``config.json``: written by :func:`write_record`, read by :func:`read_record`.

    ``task`` is ``lm`` (language models, fine-tunes included) or ``classify``. Lineage: the
    ``parent`` run (fine-tuning) and ``finetune``, the surgery made on it; ``comparison``
    places a run in a comparison; ``head`` and ``labels`` describe a classifier's output.
    """

    model_name: str
    model: GPTConfig | RNNConfig | None  # None only in a damaged or foreign config.json
    train: TrainConfig
    data: DataRecord = field(default_factory=DataRecord)
    device: dict = field(default_factory=dict)  # where it trained: device, precision, strategy
    task: str = "lm"
    parent: str | None = None
    finetune: dict | None = None
    comparison: dict | None = None
    head: dict | None = None
    labels: list | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    lmcore_version: str = lmcore.__version__

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model"], out["train"] = asdict(self.model) if self.model else None, asdict(self.train)
        kept = {f.name for f in fields(DataConfig)}  # the data settings, always; figures when known
        out["data"] = {k: v for k, v in asdict(self.data).items() if k in kept or v is not None}
        optional = ("finetune", "comparison", "head", "labels")
        return {k: v for k, v in out.items() if k not in optional or v is not None}

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """A record from ``config.json`` as any version wrote it (unknown keys are ignored)."""
        known = {f.name for f in fields(DataRecord)}
        record = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        model = data.get("model")
        record["model"] = config_from_dict(model) if isinstance(model, dict) and "family" in model else None
        record["train"] = train_config_from_dict(data.get("train") or {})
        record["data"] = DataRecord(**{k: v for k, v in (data.get("data") or {}).items() if k in known})
        return cls(**{"model_name": data.get("model_name") or "?", **record})


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_json(run_dir / CONFIG, record.to_json())


def read_record(run_dir: Path) -> RunRecord | None:
    """The run's record, or None where ``config.json`` is missing or unreadable."""
    data = read_json(run_dir / CONFIG)
    if data is None:
        return None
    try:
        return RunRecord.from_json(data)
    except (TypeError, ValueError):
        return None


def has_record(run_dir: Path) -> bool:
    return (run_dir / CONFIG).is_file()


# ---------------------------------------------------------------------------- status


def write_status(run_dir: Path, status: str, **fields) -> dict:
    """Merge ``fields`` into the run's status and set its state."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    data = read_json(run_dir / STATUS, {}) or {}
    data.update(fields, status=status, updated=time.time())
    if status == "running":
        data.update(pid=os.getpid(), host=socket.gethostname(), message=None)
    write_json(run_dir / STATUS, data)
    return data


def process_alive(pid: int) -> bool:
    """True while process ``pid`` runs (a finished, unreaped zombie counts as ended)."""
    if pid <= 0:  # 0 and negatives name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished, not yet reaped by its parent) is not training any more
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_status(run_dir: Path) -> dict:
    """The run's status, with ``running`` turned into ``interrupted`` if its process is gone."""
    data = read_json(run_dir / STATUS, None)
    if data is None:
        return {"status": "interrupted", "message": "no status file", "step": 0}
    if data.get("status") == "running" and data.get("host") == socket.gethostname():
        try:
            pid = int(data.get("pid") or 0)
        except (TypeError, ValueError):
            pid = 0
        if not process_alive(pid):
            data["status"] = "interrupted"
            data["message"] = "the training process ended without finishing; resume it"
    return data


def request_stop(run_dir: Path) -> None:
    (run_dir / STOP).touch()


def stop_requested(run_dir: Path) -> bool:
    return (run_dir / STOP).exists()


def clear_stop(run_dir: Path) -> None:
    (run_dir / STOP).unlink(missing_ok=True)


def checkpoint(run_dir: Path, which: str = "last") -> Path:
    return run_dir / CHECKPOINTS / f"{which}.keras"


def existing_checkpoint(run_dir: Path, which: str = "last") -> Path | None:
    """The ``which`` checkpoint, else the last one, else None."""
    for path in (checkpoint(run_dir, which), checkpoint(run_dir, "last")):
        if path.is_file():
            return path
    return None


@contextlib.contextmanager
def training_lock(run_dir: Path):
    """Held by the one process that trains a run; a second trainer is refused."""
    with open(run_dir / "LOCK", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LMError(f"run {run_dir.name} is already being trained by another process") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- listing


def summary(run_dir: Path) -> dict:
    record = read_record(run_dir)
    status = read_status(run_dir)
    return {
        "run_id": run_dir.name,
        "model": record.model_name if record else None,
        "corpus": record.data.source if record else None,
        "tokenizer": record.data.tokenizer if record else None,
        "status": status.get("status"),
        "step": status.get("step", 0),
        "steps": record.train.steps if record else None,
        "val_loss": status.get("val_loss"),
        "best_val_loss": status.get("best_val_loss"),
        "message": status.get("message"),
        "updated": status.get("updated"),  # when its status last changed (time.time())
        "created": record.created if record else None,
        "parent": record.parent if record else None,  # the run this one was fine-tuned from
        "task": record.task if record else "lm",  # "lm", or "classify" for a classifier
        "path": str(run_dir),
    }


def to_target(run_dir: Path, target: float) -> dict | None:
    """When a run's validation loss first reached ``target``: its step, training seconds and
    tokens (step x batch x block); None if it never did (or nothing is known of it)."""
    record = read_record(run_dir)
    reached = next(
        (
            m
            for m in read_appended(run_dir / METRICS)
            if m.get("val_loss") is not None and m["val_loss"] <= target
        ),
        None,
    )
    if reached is None or record is None:
        return None
    block = getattr(record.model, "block_size", None)
    tokens = reached["step"] * record.train.batch_size * block if block else None
    return {"step": reached["step"], "seconds": reached.get("time"), "tokens": tokens}


@dataclass
class Snapshot:
    """What a live view shows of a run, read at once: record, metrics and the latest sample."""

    record: RunRecord | None
    metrics: list[dict]  # every logged record so far
    metrics_bytes: int  # the metrics file's size: unchanged means nothing new was logged
    sample: dict | None  # the latest generated sample


def snapshot(run_dir: Path) -> Snapshot:
    """A run as it is now, for one refresh of a view that follows it."""
    path = run_dir / METRICS
    size = path.stat().st_size if path.is_file() else 0
    samples = read_appended(run_dir / SAMPLES)
    record = read_record(run_dir) if run_dir.is_dir() else None
    return Snapshot(record, read_appended(path) if size else [], size, samples[-1] if samples else None)


def list_runs(root: Path) -> list[dict]:
    """Summaries of every run under ``root``, newest first."""
    if not root.is_dir():
        return []
    # A folder whose record cannot be read is not listed (and cannot break the listing).
    found = [p for p in root.iterdir() if p.is_dir() and read_record(p) is not None]
    return [summary(p) for p in sorted(found, key=lambda p: p.name, reverse=True)]


def delete(run_dir: Path) -> None:
    """Remove a run that is not training."""
    if read_status(run_dir).get("status") == "running":
        raise LMError(f"run {run_dir.name} is still training; stop it first")
    shutil.rmtree(run_dir)
