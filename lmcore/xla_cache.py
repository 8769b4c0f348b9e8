"""The compilation cache: XLA's compiled training and validation steps kept between processes.

A new training process traces and compiles the same steps as the last one did. XLA can keep
what it compiles on disk (``--tf_xla_persistent_cache_directory``) and read it back in the
next process, but it trusts that folder: a damaged or foreign file in it fails the run
("Can't parse ... as binary proto"), and it never deletes anything. So the project owns
the folder and hands XLA only what it has checked:

    <cache>/<key>/store/<entry>           entries kept, each with <entry>.sha256 beside it
    <cache>/<key>/work-<pid>/             one process's view: checked entries, linked in,
                                          and whatever XLA writes there while it runs
    <cache>/<key>/lock                    held while the store changes

``<cache>`` is ``$LMLAB_COMPILE_CACHE`` (``off`` turns the cache off), else the user's cache
folder (``~/.cache/lmlab/xla``). ``<key>`` names the TensorFlow and Keras versions, the
machine and its CPU's instruction sets, so an upgrade or a different host misses cleanly;
XLA's own file names key each entry by the computation, so a changed model misses too.

:func:`enable` (once per process, before anything is compiled) makes the work folder,
linking in every store entry whose checksum holds; one that fails is deleted, and the run
says so and compiles afresh. :func:`publish` moves what XLA wrote into the store with its
checksum, then keeps the store within ``$LMLAB_COMPILE_CACHE_MB`` (default 256), removing the
oldest entries first. Two processes never share a work folder, and publishing renames a
finished file into place under the lock, so two jobs can fill the cache at once.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path

from lmcore import device

FLAG = "--tf_xla_persistent_cache_directory"
DEFAULT_MB = 256
_enabled: dict = {}  # this process's work folder, once enable() has run


def root() -> Path | None:
    """The cache's folder, or None when ``LMLAB_COMPILE_CACHE=off``."""
    value = os.environ.get("LMLAB_COMPILE_CACHE", "").strip()
    if value.lower() in ("off", "0", "none"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmlab" / "xla"


def key() -> str:
    """What a compiled step depends on beyond the computation: versions, machine, CPU, GPUs.
    (Read without importing TensorFlow: XLA must not have started when :func:`enable` runs.)"""
    versions = []
    for package in ("tensorflow", "keras"):
        try:
            versions.append(metadata.version(package))
        except metadata.PackageNotFoundError:
            versions.append("?")
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    gpus = ",".join(device.gpu_names_without_tf())
    text = "|".join([*versions, platform.machine(), flags, gpus])
    return f"tf{versions[0]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.pb") if p.is_file()) if folder.is_dir() else []


def enable() -> Path | None:
    """Point XLA at a work folder of checked entries (once per process); returns the folder.

    Must run before TensorFlow starts its runtime in this process (its first device query or
    operation), when XLA reads its flags: the command line calls it first thing for commands
    that train.
    Returns None where the cache is off, where ``TF_XLA_FLAGS`` already names a cache of the
    user's own (which is then left alone), or where the folder cannot be written.
    """
    if "work" in _enabled:
        return _enabled["work"]
    _enabled["work"] = None
    base = root()
    if base is None or FLAG in os.environ.get("TF_XLA_FLAGS", ""):
        return None
    home = base / key()
    store, work = home / "store", home / f"work-{os.getpid()}"
    try:
        with _locked(home):
            _clear_stale_work(home)
            store.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            dropped = [e.name for e in _entries(store) if not _admit(e, work)]
    except OSError as err:
        print(f"note: no compilation cache in {base}: {err.strerror or err}", file=sys.stderr)
        return None
    if dropped:
        print(
            f"note: the compilation cache had {len(dropped)} damaged or unknown entr"
            f"{'y' if len(dropped) == 1 else 'ies'}, removed; this run compiles afresh",
            file=sys.stderr,
        )
    os.environ["TF_XLA_FLAGS"] = f"{os.environ.get('TF_XLA_FLAGS', '')} {FLAG}={work}".strip()
    known = {p.name for p in _entries(work)}
    _enabled.update(work=work, store=store, home=home, known=known, found=len(known))
    atexit.register(_leave)
    return work


def _admit(entry: Path, work: Path) -> bool:
    """Link a store's entry into a work folder if its checksum holds, else remove it (called
    under the lock); whether it was linked."""
    check = entry.with_name(entry.name + ".sha256")
    if check.is_file() and check.read_text().strip() == _digest(entry):
        _link(entry, work / entry.name)
        return True
    entry.unlink(missing_ok=True)
    check.unlink(missing_ok=True)
    return False


def refresh() -> int:
    """Bring the entries published since :func:`enable` into this process's work folder
    (checked, as there), for a process that waited before compiling (the warm trainer, while
    the server's warm-up filled the store); returns how many."""
    work = _enabled.get("work")
    if work is None:
        return 0
    added = 0
    try:
        with _locked(_enabled["home"]):
            for entry in _entries(_enabled["store"]):
                if entry.name not in _enabled["known"] and _admit(entry, work):
                    _enabled["known"].add(entry.name)
                    added += 1
    except OSError:  # the store is gone or unreadable: this job compiles what it lacks
        return 0
    _enabled["found"] = _enabled.get("found", 0) + added
    return added


def _leave() -> None:
    """At this process's end: keep what it compiled, then remove its work folder."""
    publish()
    shutil.rmtree(_enabled["work"], ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: a copy does as well
        shutil.copyfile(source, target)


def _clear_stale_work(home: Path) -> None:
    """Remove the work folders of processes that have ended (called under the lock)."""
    for folder in home.glob("work-*"):
        pid = folder.name.removeprefix("work-")
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def publish() -> int:
    """Move the entries XLA wrote in this process into the store; returns how many."""
    work = _enabled.get("work")
    if work is None:
        return 0
    fresh = [p for p in _entries(work) if p.name not in _enabled["known"]]
    if not fresh:
        return 0
    store, moved = _enabled["store"], 0
    try:
        with _locked(_enabled["home"]):
            for entry in fresh:
                tmp = store / f".{entry.name}.{os.getpid()}"
                _link(entry, tmp)
                (store / f"{entry.name}.sha256.tmp{os.getpid()}").write_text(_digest(entry))
                os.replace(store / f"{entry.name}.sha256.tmp{os.getpid()}", store / f"{entry.name}.sha256")
                os.replace(tmp, store / entry.name)
                _enabled["known"].add(entry.name)
                _enabled["published"] = _enabled.get("published", 0) + 1
                moved += 1
            prune(store, limit_bytes())
    except OSError as err:  # a full disk costs a compilation next time, nothing more
        print(f"note: could not keep compiled steps in {store}: {err.strerror or err}", file=sys.stderr)
    return moved


def limit_bytes() -> int:
    try:
        return int(float(os.environ.get("LMLAB_COMPILE_CACHE_MB") or DEFAULT_MB) * 2**20)
    except ValueError:
        return DEFAULT_MB * 2**20


def prune(store: Path, limit: int) -> list[str]:
    """Remove the oldest entries until the store holds at most ``limit`` bytes."""
    entries = sorted(_entries(store), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in entries)
    removed = []
    while entries and total > limit:
        entry = entries.pop(0)
        total -= entry.stat().st_size
        entry.unlink(missing_ok=True)
        entry.with_name(entry.name + ".sha256").unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def status() -> dict:
    """This process's cache: its folder (None: no cache), how many entries it started with
    (or took in since), and how many it has published."""
    work = _enabled.get("work")
    return {
        "folder": str(work.parent) if work else None,
        "entries": _enabled.get("found", 0),
        "published": _enabled.get("published", 0),
    }


# ---------------------------------------------------------------------------- how long compiling takes here


def note_compile(label: str, seconds: float) -> None:
    """Remember how long ``label``'s first interval took, compiling included (cold, or from
    the cache), for the next run's live view to say what to expect."""
    home = _enabled.get("home")
    if home is None or not label:
        return
    kind = "warm" if _enabled.get("found") else "cold"
    with contextlib.suppress(OSError, ValueError), _locked(home):
        path = home / "compile-seconds.json"
        seen = json.loads(path.read_text()) if path.is_file() else {}
        seen.setdefault(label, {})[kind] = round(seconds, 1)
        tmp = home / f".compile-seconds.{os.getpid()}"
        tmp.write_text(json.dumps(seen))
        os.replace(tmp, path)


def expected_compile(label: str) -> float | None:
    """Seconds ``label``'s first steps took to compile last time, in this process's case
    (cold or from the cache), or None if never measured here."""
    home = _enabled.get("home")
    try:
        seen = json.loads((home / "compile-seconds.json").read_text()) if home else {}
    except (OSError, ValueError):
        return None
    return (seen.get(label) or {}).get("warm" if _enabled.get("found") else "cold")
