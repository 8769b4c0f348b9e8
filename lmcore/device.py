"""Device handling: which device TensorFlow trains on, the precision that goes with it, and
the memory a run needs against the memory the machine (or its container) has.

A GPU, when TensorFlow sees one, is used with mixed precision (float16 compute, float32
weights and logits); on the CPU everything stays float32. ``gpu_names_without_tf`` lets the
dashboard show the device without loading TensorFlow, and the memory estimate needs none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lmcore import LMError


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


GPU_FIX = 'pip install "tensorflow[and-cuda]>=2.21,<2.22"'  # TensorFlow's CUDA and cuDNN wheels


def unused_gpu_message(tf_gpus: int | None = None) -> str | None:
    """A plain line when ``nvidia-smi`` sees a GPU that TensorFlow cannot use (its CUDA
    libraries are missing), with the command that fixes it; None otherwise.

    ``tf_gpus``: the GPUs TensorFlow sees, if known; else a child process counts them, so
    that a page that must not import TensorFlow can still ask (only where there is a GPU).
    """
    names = gpu_names_without_tf()
    if not names:
        return None
    if tf_gpus is None:
        code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            tf_gpus = int(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
    if tf_gpus:
        return None
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return (
        f"nvidia-smi sees {names[0]}{more}, but TensorFlow cannot use it (its CUDA libraries are not "
        f"installed), so training runs on the CPU; fix: {GPU_FIX}"
    )


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


# ---------------------------------------------------------------- memory: what training needs, what there is

RUNTIME_BYTES = 800 * 2**20  # TensorFlow itself, the data and the traced graphs (measured ~0.8 GB)
XLA_BYTES = 300 * 2**20  # XLA compiling the GPT's step on a CPU (measured: +270 MB at nano's peak)


def parameter_count(m) -> int:
    """Weights of the model ``build_model(m)`` builds (checked against Keras in the tests)."""
    V, T, C, L = m.vocab_size, m.block_size, m.n_embd, m.n_layer
    if m.family == "gpt":  # embedding, positions, per block: 2 LayerNorm scales + 12 C^2, final norm
        positions = 0 if m.rotary else T * C
        head = 0 if m.tied_head else V * C
        return V * C + positions + L * (2 * C + 12 * C * C) + C + head
    H = m.n_hidden
    gates = 4 if m.family == "lstm" else 3
    bias = H if m.family == "lstm" else 2 * H  # Keras' GRU keeps two biases (reset_after)
    rnn = sum(gates * ((C if i == 0 else H) * H + H * H + bias) for i in range(L))
    return V * C + rnn + H * V + V


def estimate_memory(m, c) -> dict:
    """Bytes one training step needs, roughly: weights, gradients and optimizer state, plus the
    float32 activations backpropagation keeps (times 1.5 for the backward pass's temporaries)."""
    params = parameter_count(m)
    state = params * 4 * (4 if c.optimizer in ("adam", "adamw") else 3)  # w, grad (+ m, v | momentum)
    if m.family == "gpt":  # per token: ~16 C of layer outputs and 3 attention rows per head
        per_token = m.n_layer * (16 * m.n_embd + 3 * m.n_head * m.block_size) + 3 * m.n_embd
    else:  # per token: embedding, gates and states of every layer
        per_token = m.n_embd + m.n_layer * (8 if m.family == "lstm" else 6) * m.n_hidden
    per_token += 3 * m.vocab_size  # logits, their softmax and its gradient
    activations = int(1.5 * 4 * per_token * m.block_size * c.batch_size)
    return {
        "parameters": params,
        "state_bytes": state,
        "activation_bytes": activations,
        "per_batch_item": activations // c.batch_size,
        "total_bytes": RUNTIME_BYTES + state + activations,
    }


def available_memory() -> tuple[int, str]:
    """(bytes, where) training can use: a GPU's memory when one is visible, else the memory
    the system reports available (within this container's cgroup limit, if lower)."""
    try:
        total_mib = nvidia_smi("memory.total")
        if total_mib:
            return int(float(total_mib[0]) * 2**20), "GPU memory"
    except ValueError:
        pass
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    left = cgroup_memory_left()  # a container's limit, when lower than the machine's
    if left is not None:
        available = min(available or 2**62, left)
    return (available if available is not None else 2**62), "memory available"


def check_memory(m, c) -> dict:
    """Refuse settings whose estimated memory exceeds what the machine has; returns the estimate.

    On a CPU, XLA's compilation adds :data:`XLA_BYTES` at the start of training; where only
    the run without it fits and ``c`` leaves XLA to the default, XLA is turned off in ``c``
    (slower, but it trains) and the estimate's ``note`` says so.
    """
    est = estimate_memory(m, c)
    have, where = available_memory()
    gb = lambda n: f"{n / 2**30:.1f} GB"  # noqa: E731
    xla = (c.jit_compile if c.jit_compile is not None else m.family == "gpt") and where != "GPU memory"
    if xla and c.jit_compile is None and est["total_bytes"] <= have < est["total_bytes"] + XLA_BYTES:
        c.jit_compile = False
        est["note"] = (
            f"XLA compilation is off for this run: with it, training would need about "
            f"{gb(est['total_bytes'] + XLA_BYTES)}, more than the {gb(have)} of {where} (it trains slower)"
        )
    elif xla:
        est["total_bytes"] += XLA_BYTES
    if est["total_bytes"] > have:
        fixed = est["total_bytes"] - est["activation_bytes"]  # what a smaller batch does not change
        fits = (have - fixed) // max(est["per_batch_item"], 1)
        advice = (
            f"lower the batch size (about {fits} fits)"
            if fits >= 1
            else "choose a smaller model or block size (even a batch of 1 does not fit)"
        )
        raise LMError(
            f"training this model with batch {c.batch_size} x block {m.block_size} needs about "
            f"{gb(est['total_bytes'])} ({est['parameters']:,} parameters with their optimizer state: "
            f"{gb(est['state_bytes'])}; activations: {gb(est['activation_bytes'])}), more than the "
            f"{gb(have)} of {where}; {advice}"
        )
    return est
