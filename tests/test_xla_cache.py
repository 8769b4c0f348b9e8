"""The compilation cache: checked entries in, damaged or foreign ones out, bounded, shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmcore import xla_cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """This process as if it had not enabled the cache yet, with its own cache folder."""
    monkeypatch.setattr(xla_cache, "_enabled", {})
    monkeypatch.setattr(xla_cache.atexit, "register", lambda fn: None)
    monkeypatch.setenv("LMLAB_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_XLA_FLAGS", "")  # recorded, so that what enable() sets is undone
    monkeypatch.delenv("TF_XLA_FLAGS")
    return tmp_path / "cache" / xla_cache.key() / "store"


def _entry(folder: Path, name: str, data: bytes, checksum: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"xla_compile_cache__{name}__XLA_CPU_JIT.pb"
    path.write_bytes(data)
    if checksum is not None:
        (folder / f"{path.name}.sha256").write_text(checksum)
    return path


def test_only_checked_entries_reach_xla_and_the_others_are_removed(fresh, capsys):
    import hashlib

    good = _entry(fresh, "1", b"compiled", hashlib.sha256(b"compiled").hexdigest())
    damaged = _entry(fresh, "2", b"half a fil", hashlib.sha256(b"half a file").hexdigest())
    foreign = _entry(fresh, "3", b"someone else's")
    work = xla_cache.enable()
    assert f"{xla_cache.FLAG}={work}" in os.environ["TF_XLA_FLAGS"]
    assert sorted(p.name for p in work.glob("*.pb")) == [good.name]
    assert not damaged.exists() and not foreign.exists() and good.exists()
    assert "2 damaged or unknown entries, removed; this run compiles afresh" in capsys.readouterr().err
    assert xla_cache.status()["entries"] == 1
    assert xla_cache.enable() == work  # once per process


def test_a_process_that_waited_takes_in_what_was_published_since_it_started(fresh):
    """The warm trainer enables the cache when it starts and compiles minutes later, after the
    server's warm-up has filled the store: the job it is handed must find those entries."""
    import hashlib

    work = xla_cache.enable()
    assert not list(work.glob("*.pb")) and xla_cache.status()["entries"] == 0
    new = _entry(fresh, "4", b"warmed", hashlib.sha256(b"warmed").hexdigest())  # another process
    bad = _entry(fresh, "5", b"torn", hashlib.sha256(b"whole").hexdigest())
    assert xla_cache.refresh() == 1
    assert sorted(p.name for p in work.glob("*.pb")) == [new.name] and not bad.exists()
    assert xla_cache.status()["entries"] == 1
    assert xla_cache.refresh() == 0 and xla_cache.publish() == 0  # known: not taken or kept twice


def test_what_xla_writes_is_published_with_its_checksum_and_the_store_stays_bounded(fresh, monkeypatch):
    monkeypatch.setenv("LMLAB_COMPILE_CACHE_MB", str(2.5 / 1024))  # 2.5 kB
    work = xla_cache.enable()
    for n in range(4):
        _entry(work, str(n), bytes([n]) * 1024)  # as XLA writes them
        os.utime(work / f"xla_compile_cache__{n}__XLA_CPU_JIT.pb", (n + 1, n + 1))
        assert xla_cache.publish() == 1
    kept = sorted(p.name for p in fresh.glob("*.pb"))
    assert kept == [f"xla_compile_cache__{n}__XLA_CPU_JIT.pb" for n in (2, 3)]  # the oldest went
    for name in kept:
        assert (fresh / f"{name}.sha256").is_file()
    assert xla_cache.publish() == 0  # nothing new


def test_a_cache_named_by_the_user_is_left_alone(fresh, monkeypatch):
    monkeypatch.setenv("TF_XLA_FLAGS", f"{xla_cache.FLAG}=/somewhere/else")
    assert xla_cache.enable() is None
    assert os.environ["TF_XLA_FLAGS"] == f"{xla_cache.FLAG}=/somewhere/else"


def test_off_means_off(fresh, monkeypatch):
    monkeypatch.setenv("LMLAB_COMPILE_CACHE", "off")
    assert xla_cache.enable() is None and xla_cache.FLAG not in os.environ.get("TF_XLA_FLAGS", "")


def _train(cache: str, root: Path, corpus: Path) -> tuple[list, str]:
    """A tiny XLA-compiled GPT trained by the command line, with the given cache setting."""
    env = {**os.environ, "LMLAB_COMPILE_CACHE": cache}
    env.pop("TF_XLA_FLAGS", None)
    argv = ["train", "--corpus", str(corpus), "--model", "tiny", "--steps", "20", "--batch-size", "8"]
    argv += ["--log-every", "10", "--eval-every", "10", "--eval-batches", "1", "--sample-length", "0"]
    argv += ["--jit", "--seed", "3", "--runs-dir", str(root), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "lmcore", *argv], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = Path(json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    figures = [{k: r.get(k) for k in ("step", "loss", "step_losses", "val_loss")} for r in records]
    return figures, proc.stderr


@pytest.mark.slow  # trains for real
def test_warm_cold_and_no_cache_train_alike_and_two_jobs_fill_it_at_once(small_file, tmp_path):
    cache = tmp_path / "xla"
    without, _ = _train("off", tmp_path / "a", small_file)
    with __import__("concurrent.futures").futures.ThreadPoolExecutor(2) as pool:  # two cold jobs at once
        cold = list(pool.map(lambda i: _train(str(cache), tmp_path / f"cold{i}", small_file), range(2)))
    store = next(cache.glob("*/store"))
    entries = sorted(store.glob("*.pb"))
    assert entries, "the cold jobs left no compiled steps"
    for entry in entries:  # whole files, each with the checksum of what it holds
        import hashlib

        assert (store / f"{entry.name}.sha256").read_text() == hashlib.sha256(entry.read_bytes()).hexdigest()
    assert not list(cache.glob("*/work-*"))  # each process's view went with it
    warm, _ = _train(str(cache), tmp_path / "w", small_file)
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # damaged, as by a full disk
    mended, err = _train(str(cache), tmp_path / "m", small_file)
    assert "compiles afresh" in err
    assert without == cold[0][0] == cold[1][0] == warm == mended
