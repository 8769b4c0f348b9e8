"""Distribution: the same run on one device, on two mirrored CPU replicas, and on two workers.

Each configuration runs ``python -m lmcore train`` in its own process: logical devices must
be configured before TensorFlow initialises, and a multi-worker cluster needs one process
per worker. The global batch is the same everywhere, so the logged loss curve must be the
same as on one device up to float rounding (summation order across replicas, and XLA, which
the one-device run uses and the replicated runs do not): we allow 1e-4 nats per logged
value (measured: about 1e-6), far below the 0.1+ nats the curve moves between logs. The
optimizer is SGD with a low clip norm, so that every step is clipped and the clipping shows
in the curve: Keras alone clips each replica's share of the gradient, which moved this curve
by 0.1 to 0.3 nats (Adam, being scale-invariant, hides it to about 1e-3), and
``distribute.clip_after_all_reduce`` fixes it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from lmcore import LMError, runs
from lmcore.training import distribute

TOLERANCE = 1e-4  # nats, per logged loss and validation loss
ARGS = [
    "train",
    "--model", "tiny",
    "--steps", "12",
    "--batch-size", "8",
    "--log-every", "3",
    "--eval-every", "6",
    "--eval-batches", "2",
    "--sample-length", "0",
    "--optimizer", "sgd",
    "--lr", "0.3",
    "--clipnorm", "0.5",
    "--seed", "7",
    "--json",
]  # fmt: skip

# Two logical CPU devices, configured before TensorFlow initialises, then the CLI as usual.
TWO_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from lmcore import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _env(runs_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(LMLAB_RUNS_DIR=str(runs_dir), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _start(runs_dir, corpus_file, strategy: str, script: str | None = None, **env):
    cmd = [sys.executable, *(["-c", script] if script else ["-m", "lmcore"]), *ARGS]
    cmd += ["--corpus", str(corpus_file), "--strategy", strategy]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(runs_dir, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _curve(proc) -> tuple[list, dict]:
    """(logged records, the run's config) of a finished training process."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "completed", result
    run_dir = runs.Path(result["run_dir"])
    return runs.read_jsonl(run_dir / "metrics.jsonl"), runs.read_json(run_dir / "config.json")


def _assert_same_curve(got: list, want: list) -> None:
    # Step 0 (the untrained model's validation) is logged on one device and mirrored replicas,
    # not by several workers; the trained steps must agree.
    got, want = [r for r in got if r["step"]], [r for r in want if r["step"]]
    assert [r["step"] for r in got] == [r["step"] for r in want] == [3, 6, 9, 12]
    for g, w in zip(got, want, strict=True):
        for key in ("loss", "val_loss"):
            assert (key in g) == (key in w)
            if key in w:
                assert abs(g[key] - w[key]) < TOLERANCE, (g["step"], key, g[key], w[key])
    assert want[-1]["loss"] < want[0]["loss"] - 0.1  # the curve moves: the comparison means something


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, small_file):
    return _curve(_start(tmp_path_factory.mktemp("one"), small_file, "default"))


def test_two_mirrored_cpu_replicas_follow_the_one_device_curve(tmp_path, small_file, one_device):
    got, config = _curve(_start(tmp_path, small_file, "mirrored", script=TWO_CPUS))
    assert config["device"]["strategy"] == "mirrored" and config["device"]["replicas"] == 2
    assert one_device[1]["device"]["replicas"] == 1
    _assert_same_curve(got, one_device[0])


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_follow_the_one_device_curve(tmp_path, small_file, one_device):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = [
        _start(
            tmp_path / f"worker{i}",
            small_file,
            "multiworker",
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}),
        )
        for i in range(2)
    ]
    try:
        curves = [_curve(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for got, config in curves:
        assert config["device"]["strategy"] == "multiworker"
        assert config["device"]["replicas"] == 2 and config["device"]["workers"] == 2
        _assert_same_curve(got, one_device[0])


def test_strategy_choice_and_bad_input(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.resolve("default") == "default"
    assert distribute.resolve("auto") in ("default", "mirrored")  # mirrored only with 2+ GPUs
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {}}))
    assert distribute.resolve("auto") == "multiworker"
    with pytest.raises(LMError, match="unknown strategy"):
        distribute.resolve("ring")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(LMError, match="TF_CONFIG"):
        distribute.tf_config_workers()
