"""Shared fixtures: a small corpus file, isolated runs/data directories, and one tiny trained run."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# No warm trainer waits after each test's jobs (each would hold TensorFlow in memory for its
# idle time); the tests of the warm trainer turn it on.
os.environ.setdefault("LMLAB_WARM_TRAINER", "0")
os.environ.setdefault("LMLAB_WARM_CACHE", "0")  # nor a server's warm-up of the compilation cache
SHARED_DATA = ROOT.parent / "shared" / "data"
# One compilation cache for the whole session, as one server's jobs share theirs.
COMPILE_CACHE = Path(tempfile.mkdtemp(prefix="lmlab-test-xla-"))

# Tiny settings every training test shares: seconds, not minutes, on two cores.
TINY = dict(steps=30, batch_size=8, log_every=10, eval_every=20, eval_batches=2, sample_length=20, seed=7)


# The fast lane (pytest -m "not slow") leaves out every test that drives a browser or trains
# for real: the browser modules, tests that use a trained run's fixture, and those marked slow.
SLOW_FIXTURES = {"tiny_run", "classifier_run", "one_device", "keras_file", "app", "browser", "page"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.startswith("test_browser") or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """No test reads or writes the user's ./runs or ~/.cache (compiled steps are shared)."""
    monkeypatch.setenv("LMLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LMLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LMLAB_COMPILE_CACHE", str(COMPILE_CACHE))


@pytest.fixture(scope="session")
def small_text() -> str:
    from lmcore.text import corpus

    return corpus.load("builtin:python-docs").text[:30_000]


@pytest.fixture(scope="session")
def small_file(tmp_path_factory, small_text) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(small_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, small_file):
    """One completed run of the tiny GPT, shared by the tests that only read it."""
    from lmcore.nn.config import DataConfig, make_train_config
    from lmcore.training import lm, lmdata

    root = tmp_path_factory.mktemp("shared-runs")
    job = lmdata.prepare("tiny", DataConfig(source=str(small_file)), make_train_config("tiny", **TINY))
    result = lm.start(job, root, name="shared")
    assert result["status"] == "completed"
    return Path(result["run_dir"])
