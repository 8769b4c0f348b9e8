"""Device handling: which device TensorFlow trains on, and the precision that goes with it.

A GPU, when TensorFlow sees one, is used with mixed precision (float16 compute, float32
weights and logits); on the CPU everything stays float32. ``gpu_names_without_tf`` lets the
dashboard show the device without loading TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide the C++ start-up lines TensorFlow writes straight to file descriptor 2.

    TensorFlow 2.21 logs them through absl before its log level applies, so no environment
    variable silences them; Python-level errors still surface after the block.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. under some test runners)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Import TensorFlow without its native start-up noise; returns the module."""
    with _quiet_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # probes CUDA once, quietly
    return tf


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow can use (imports TensorFlow)."""
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g) or {} for g in gpus]
    return [d.get("device_name") or g.name for g, d in zip(gpus, details, strict=True)]


def nvidia_smi(field: str) -> list[str]:
    """One ``nvidia-smi --query-gpu`` field per GPU, without TensorFlow ([] when there is none)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_names_without_tf() -> list[str]:
    """GPU names from ``nvidia-smi``, for pages that must not import TensorFlow."""
    return nvidia_smi("name")


def describe() -> dict:
    """{"device": "CPU" or "GPU (<name>)", "precision": ..., "gpus": [...]} (imports TF)."""
    gpus = gpu_names()
    if gpus:
        return {
            "device": f"GPU ({gpus[0]})" + (f" x{len(gpus)}" if len(gpus) > 1 else ""),
            "precision": "mixed_float16",
            "gpus": gpus,
        }
    return {"device": "CPU", "precision": "float32", "gpus": []}


def setup(info: dict) -> None:
    """Set Keras' global dtype policy for ``info['precision']`` before models are built."""
    import keras

    keras.mixed_precision.set_global_policy(info["precision"])


def memory_cgroups() -> list[tuple[str, Path]]:
    """This process's memory cgroup folders, its own first, then the mount's root: a list of
    ("v2" or "v1", folder). Empty where /proc/self/cgroup cannot be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, version = Path("/sys/fs/cgroup"), "v2"
        elif "memory" in controllers.split(","):
            base, version = Path("/sys/fs/cgroup/memory"), "v1"
        else:
            continue
        found += [(version, base / path.lstrip("/")), (version, base)]
    return list(dict.fromkeys(found))


def cgroup_memory_left() -> int | None:
    """Bytes this process's memory cgroup still allows (limit minus use), or None: no limit."""
    names = {"v2": ("memory.max", "memory.current"), "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes")}
    for version, folder in memory_cgroups():
        try:
            limit = (folder / names[version][0]).read_text().strip()
            used = int((folder / names[version][1]).read_text())
        except (OSError, ValueError):
            continue
        if limit != "max" and int(limit) < 2**60:  # v1 says "no limit" with a huge number
            return int(limit) - used
    return None


def oom_kills() -> int | None:
    """Processes the kernel has killed for lack of memory in this process's memory cgroup
    (v2 ``memory.events``, v1 ``memory.oom_control``); None where it cannot be read."""
    names = {"v2": "memory.events", "v1": "memory.oom_control"}
    for version, folder in memory_cgroups():
        try:
            for line in (folder / names[version]).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None
