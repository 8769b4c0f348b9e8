"""Device handling: a GPU that nvidia-smi sees but TensorFlow cannot use is said plainly, with
its fix (issue 15), tested here with a stand-in nvidia-smi on PATH; and the memory estimate."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from lmcore import device

STAND_IN = """#!/bin/sh
case "$1" in
  --query-gpu=name) echo "NVIDIA H200" ;;
  --query-gpu=memory.total) echo "143771" ;;
esac
"""


@pytest.fixture
def gpu_on_path(tmp_path, monkeypatch):
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text(STAND_IN)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    return tool.parent


def test_a_gpu_tensorflow_cannot_use_is_said_with_its_fix(gpu_on_path):
    assert device.gpu_names_without_tf() == ["NVIDIA H200"]
    message = device.unused_gpu_message(tf_gpus=0)
    assert "nvidia-smi sees NVIDIA H200, but TensorFlow cannot use it" in message
    assert message.endswith(device.GPU_FIX)
    assert device.unused_gpu_message(tf_gpus=1) is None  # TensorFlow has it: nothing to say
    assert device.unused_gpu_message() == message  # counted by a child process: none here


def test_no_gpu_means_nothing_to_say(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert device.unused_gpu_message(tf_gpus=0) is None


@pytest.mark.slow  # trains for real
def test_the_command_line_says_so_when_it_trains(gpu_on_path, small_file, tmp_path):
    args = ["train", "--corpus", str(small_file), "--model", "tiny", "--steps", "2", "--batch-size", "4"]
    args += ["--log-every", "1", "--eval-batches", "1", "--sample-length", "0", "--runs-dir", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", "lmcore", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "note: nvidia-smi sees NVIDIA H200, but TensorFlow cannot use it" in out.stderr
    assert device.GPU_FIX in out.stderr
