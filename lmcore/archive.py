"""Keep a run: a run folder exported to one ``.zip``, and such a file imported back as a run.

An archive holds one folder, ``<run id>/``, with the run's record, status, metrics, samples,
tokenizer, its corpus when the run keeps one, a classifier's results, and its checkpoints;
never TensorBoard's events, a stop request, the lock or temporary files (:data:`FILES`).

An archive may come from anyone (an upload on a public server), so :func:`import_run` trusts
nothing in it. It reads the zip's directory first and refuses the whole file for one bad
member (a name that could leave the folder, a link, a duplicate, a file a run does not have,
too many files, too many bytes, a zip bomb), unpacks it into a hidden folder of its own,
checks what it unpacked (the record, status, metrics, tokenizer, and each checkpoint's Keras
classes against those our models save), and only then renames it into place: an import
either adds one whole run or leaves the runs folder as it was. Keras' safe mode still guards
every load of a checkpoint; the class check refuses a hostile one before it is stored at all.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

from lmcore import LMError, first_line, runs
from lmcore.jobs import queue
from lmcore.nn.config import check_train_config, validate
from lmcore.text import tokenizers

# What a run folder may hold in an archive (everything else in the folder is left out):
FILES = (runs.CONFIG, runs.STATUS, runs.METRICS, runs.SAMPLES, runs.TOKENIZER, runs.CORPUS, runs.RESULTS)
CHECKPOINT = re.compile(rf"^{runs.CHECKPOINTS}/[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}\.keras$")
REQUIRED = (runs.CONFIG, runs.STATUS)
KERAS_FILES = ("metadata.json", "config.json", "model.weights.h5")  # what Keras 3 writes in a .keras

# Caps, from real runs (docs/training.md): a `small` run, the largest preset, is 258 MB
# (two checkpoints of 129 MB each); a run has at most 10 of the files above.
MAX_BYTES = 300 * 2**20  # uncompressed, the whole run
MAX_MEMBERS = 20
# Measured deflate ratios: checkpoints 1.1 to 1.4, JSON and text 2 to 3. A member over 1 MB
# that inflates more than 100 times is a zip bomb, not a run.
MAX_RATIO = 100
RATIO_FROM = 2**20
MAX_KERAS_CONFIG = 4 * 2**20  # a checkpoint's config.json: 6.5 to 9.6 kB measured

# Every class the checkpoints of our presets (tiny, nano, modern-nano, small, modern-small,
# seed-lstm, gru), a fine-tune and a classifier name in their config.json, on every optimizer
# and schedule, with mixed precision; and our own registered layers. No Lambda, no other code.
KERAS_CLASSES = frozenset(
    # Keras' own: the functional model, its layers and their initializers
    "Functional InputLayer Embedding Dense Dropout LayerNormalization LSTM GRU Dot DTypePolicy "
    "__keras_tensor__ RandomNormal RandomUniform GlorotUniform Orthogonal Ones Zeros "
    # the compiled model's optimizers, loss and metric
    "Adam AdamW SGD Muon SparseCategoricalCrossentropy SparseCategoricalAccuracy "
    # ours, registered in lmcore.nn.models, lmcore.nn.schedule and lmcore.training.loop
    "CausalSelfAttention Block SoftCap PositionEmbedding TiedEmbedding Schedule StepLosses".split()
)


def _member_names(run_dir: Path) -> list[str]:
    """The files of ``run_dir`` an archive keeps, as archive names below the run's folder."""
    names = [name for name in FILES if (run_dir / name).is_file()]
    folder = run_dir / runs.CHECKPOINTS
    found = sorted(p.name for p in folder.glob("*.keras")) if folder.is_dir() else []
    return names + [f"{runs.CHECKPOINTS}/{n}" for n in found if CHECKPOINT.match(f"{runs.CHECKPOINTS}/{n}")]


# ---------------------------------------------------------------------------- export


def export(run_dir: Path, dest) -> None:
    """Write the run in ``run_dir`` as one zip to ``dest``: a path (written under a temporary
    name, then renamed) or a binary file. A run still training is refused."""
    run_dir = Path(run_dir)
    if not runs.has_record(run_dir):
        raise LMError(f"no run at {run_dir}")
    if runs.read_status(run_dir).get("status") == "running":
        raise LMError(f"run {run_dir.name} is still training; stop it or let it finish, then export it")
    if not isinstance(dest, str | os.PathLike):
        return _write(run_dir, dest)
    try:
        runs.atomic_write(Path(dest), lambda tmp: _write(run_dir, tmp))
    except OSError as err:
        raise LMError(f"cannot write {dest}: {err.strerror or err}") from None


def export_bytes(run_dir: Path) -> bytes:
    """The archive of :func:`export`, in memory (the dashboard's download)."""
    buffer = io.BytesIO()
    export(run_dir, buffer)
    return buffer.getvalue()


def _write(run_dir: Path, dest) -> None:
    with zipfile.ZipFile(dest, "w") as zf:
        for name in _member_names(run_dir):
            # Checkpoints hardly compress (1.1x measured): stored, they export and load faster.
            kind = zipfile.ZIP_STORED if name.endswith(".keras") else zipfile.ZIP_DEFLATED
            zf.write(run_dir / name, f"{run_dir.name}/{name}", compress_type=kind)


# ---------------------------------------------------------------------------- import


def import_run(root: Path, source, owner_id: str | None = None, max_bytes: int = MAX_BYTES) -> str:
    """Add the run in ``source`` (a path, bytes or a binary file) to ``root``; returns its id.

    The id is the archive's own unless ``root`` already has it (then ``<id>-2``, ...). With
    ``owner_id`` (public mode) the run belongs to that session. ``max_bytes`` caps the
    archive and what it unpacks to. Refusals are one :class:`LMError` and leave ``root`` as
    it was.
    """
    root = Path(root)
    with _open_zip(source, max_bytes) as zf:
        prefix, members = _check_outer(zf.infolist(), max_bytes)
        root.mkdir(parents=True, exist_ok=True)
        # Hidden (not a run id) and one level down, so no listing ever sees a half-checked run.
        scratch = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        try:
            staged = scratch / "run"
            _unpack(zf, members, prefix, staged)
            _check_run(staged, max_bytes)
            _settle_status(staged)
            run_id = _place(root, staged, prefix)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if owner_id:
        runs.jobs_dir(root).mkdir(parents=True, exist_ok=True)
        runs.write_json(queue.job_file(root, run_id, "owner"), {"owner": owner_id, "time": time.time()})
    return run_id


def _open_zip(source, max_bytes: int) -> zipfile.ZipFile:
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    try:
        size = os.path.getsize(source) if isinstance(source, str | os.PathLike) else _length(source)
        if size > max_bytes:
            raise LMError(f"the archive is {_mb(size)}; the limit is {_mb(max_bytes)}")
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise LMError("the file is not a zip archive") from None
    except OSError as err:
        raise LMError(f"cannot read the archive: {err.strerror or err}") from None


def _length(stream) -> int:
    here = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(here)
    return size


def _check_entries(infos: list[zipfile.ZipInfo], max_bytes: int, where: str) -> None:
    """The checks every zip we read passes (the archive, and each checkpoint inside it)."""
    if len(infos) > MAX_MEMBERS:
        raise LMError(f"{where} has {len(infos)} files; a run has fewer than {MAX_MEMBERS}")
    for name, count in Counter(i.filename for i in infos).items():
        if count > 1:
            raise LMError(f"{where} holds {name!r} {count} times")
    total = 0
    for info in infos:
        mode = info.external_attr >> 16  # no file type: written with none (Keras writes 0o600)
        if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file"
            raise LMError(f"{info.filename!r} in {where} is {kind}")
        _check_name(info.filename, where)
        if info.file_size > max_bytes:
            raise LMError(f"{info.filename!r} in {where} unpacks to {_mb(info.file_size)}; too large")
        if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise LMError(f"{info.filename!r} in {where} inflates over {MAX_RATIO} times: a zip bomb")
        total += info.file_size
    if total > max_bytes:
        raise LMError(f"{where} unpacks to {_mb(total)}; the limit is {_mb(max_bytes)}")


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def _check_name(name: str, where: str) -> None:
    parts = name.split("/")
    if (
        name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"^[A-Za-z]:", name)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise LMError(f"{where} has an unsafe file name {name!r}")


def _check_outer(infos: list[zipfile.ZipInfo], max_bytes: int) -> tuple[str, list[zipfile.ZipInfo]]:
    """(the run's folder name, the members) of an archive whose directory passes every check."""
    _check_entries(infos, max_bytes, "the archive")
    prefixes = {i.filename.split("/", 1)[0] for i in infos}
    if len(prefixes) != 1 or any("/" not in i.filename for i in infos):
        raise LMError("the archive must hold one run's folder and nothing else")
    prefix = prefixes.pop()
    names = {i.filename.split("/", 1)[1] for i in infos}
    for name in sorted(names):
        if name not in FILES and not CHECKPOINT.match(name):
            raise LMError(f"the archive holds {name!r}, which is not a file of a run")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise LMError(f"the archive has no {' or '.join(missing)}: it is not a run")
    return prefix, infos


def _unpack(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], prefix: str, staged: Path) -> None:
    (staged / runs.CHECKPOINTS).mkdir(parents=True)
    for info in members:
        name = info.filename[len(prefix) + 1 :]
        try:
            with zf.open(info) as src, open(staged / name, "xb") as dst:
                shutil.copyfileobj(src, dst, 2**20)  # zipfile stops at the size the directory gave
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, ValueError) as err:
            raise LMError(f"cannot unpack {name!r} from the archive: {err}") from None


# ---------------------------------------------------------------------------- what was unpacked


def _check_run(run_dir: Path, max_bytes: int) -> None:
    """Refuse a run folder whose files are not what a run of ours writes."""
    data = runs.read_json(run_dir / runs.CONFIG)
    if data is None:
        raise LMError(f"{runs.CONFIG} is not a JSON object: not a run's record")
    try:
        record = runs.RunRecord.from_json(data)
        if record.model is None:
            raise LMError("it has no model settings")
        if record.task not in ("lm", "classify"):
            raise LMError(f"unknown task {record.task!r}")
        validate(record.model)  # what building the model checks first
        check_train_config(record.train)
    except (LMError, TypeError, ValueError, AttributeError) as err:
        raise LMError(f"{runs.CONFIG} is not a run's record: {err}") from None
    # A run on anything but a built-in corpus carries its text: without it, resuming would load
    # the record's source on this server (a file of the server's, named by a stranger).
    if record.task == "lm" and not record.data.source.startswith("builtin:"):
        if not (run_dir / runs.CORPUS).is_file():
            raise LMError(f"a run on {record.data.source!r} must carry its text ({runs.CORPUS})")
    status = runs.read_json(run_dir / runs.STATUS)
    if status is None or status.get("status") not in runs.STATUSES:
        raise LMError(f"{runs.STATUS} does not give one of the statuses {', '.join(runs.STATUSES)}")
    for name in (runs.METRICS, runs.SAMPLES):
        _check_lines(run_dir / name)
    if (run_dir / runs.TOKENIZER).exists():
        try:
            tokenizers.load(run_dir / runs.TOKENIZER)
        except Exception as err:  # the tokenizers library raises its own types for a bad file
            raise LMError(f"{runs.TOKENIZER} is not a tokenizer ({first_line(err)})") from None
    if (run_dir / runs.RESULTS).exists() and runs.read_json(run_dir / runs.RESULTS) is None:
        raise LMError(f"{runs.RESULTS} is not a JSON object")
    for path in sorted((run_dir / runs.CHECKPOINTS).glob("*.keras")):
        check_checkpoint(path, max_bytes, f"{runs.CHECKPOINTS}/{path.name}")


def _check_lines(path: Path) -> None:
    """Every complete line a JSON object (after the last newline, a line cut short by an
    interrupted run: its readers skip it too)."""
    if not path.exists():
        return
    for n, line in enumerate(path.read_bytes().split(b"\n")[:-1], 1):
        try:
            ok = not line.strip() or isinstance(json.loads(line), dict)
        except (ValueError, RecursionError):
            ok = False
        if not ok:
            raise LMError(f"line {n} of {path.name} is not a JSON object")


def check_checkpoint(path: Path, max_bytes: int = MAX_BYTES, label: str | None = None) -> None:
    """Refuse a ``.keras`` file that is not a zip of Keras' three files, or whose model names a
    class outside :data:`KERAS_CLASSES` (a ``Lambda`` layer carries code)."""
    label = label or path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_entries(infos, max_bytes, label)
            unknown = sorted({i.filename for i in infos} - set(KERAS_FILES))
            if unknown or "config.json" not in zf.namelist():
                raise LMError(f"{label} is not a Keras model file (it holds {unknown or 'no config.json'})")
            info = zf.getinfo("config.json")
            if info.file_size > MAX_KERAS_CONFIG:
                raise LMError(f"{label}'s config.json is {_mb(info.file_size)}; too large")
            config = json.loads(zf.read(info))
    except (zipfile.BadZipFile, EOFError, ValueError, RecursionError, RuntimeError, NotImplementedError):
        raise LMError(f"{label} is not a Keras model file") from None
    for item in _objects(config):
        name, module, registered = item["class_name"], item.get("module"), item.get("registered_name")
        if not isinstance(name, str) or name not in KERAS_CLASSES:
            raise LMError(f"{label} uses the Keras class {name!r}, which LM Lab's models never save")
        if module is not None and str(module).split(".")[0] not in ("keras", "lmcore"):
            raise LMError(f"{label} loads {name!r} from the module {module!r}")
        if registered not in (None, name, f"lmcore>{name}"):
            raise LMError(f"{label} registers {name!r} as {registered!r}")


def _objects(config):
    """Every object a Keras config serializes (each dict with a ``class_name``)."""
    todo = [config]
    while todo:  # a loop, not recursion: a hostile file may nest deeply
        item = todo.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)


def _settle_status(run_dir: Path) -> None:
    """An imported run trains nowhere: ``running`` becomes ``interrupted`` (resumable), the
    other machine's process id goes, and ``updated`` is now, so public mode's disk budget
    does not take the new arrival first as the oldest run."""
    status = runs.read_json(run_dir / runs.STATUS)
    if status["status"] == "running":
        status.update(status="interrupted", message="imported while it was training; resume it")
    for key in ("pid", "host"):
        status.pop(key, None)
    status.update(updated=time.time(), imported=time.time())
    runs.write_json(run_dir / runs.STATUS, status)


def _place(root: Path, staged: Path, prefix: str) -> str:
    """Rename ``staged`` into ``root`` under a free id: the archive's, else with ``-2``, ``-3``..."""
    record = runs.read_record(staged)
    ok = runs.RUN_ID.match(prefix) and ".." not in prefix
    base = prefix if ok else runs.new_run_id(record.model_name, f"{record.model_name}-imported")
    for n in range(1, 1000):
        run_id = base if n == 1 else f"{base[:120]}-{n}"
        if any(runs.jobs_dir(root).glob(f"{run_id}.*")):  # a queued job's id, its folder not yet made
            continue
        try:
            (root / run_id).mkdir()  # the id is ours from here: no other import or run takes it
        except FileExistsError:
            continue
        os.rename(staged, root / run_id)  # onto our own empty folder: one step, never over a run
        return run_id
    raise LMError(f"no free run id for {base!r}")
