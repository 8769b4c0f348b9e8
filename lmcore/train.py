"""Training: next-token pre-training with Keras ``fit``, recorded step by step in a run folder.

``start`` checks everything (corpus, tokenizer, window length, model and training
settings) before it creates the run folder, so bad input leaves nothing behind; it then
trains. ``resume`` continues a stopped or interrupted run from its last checkpoint, with
the optimizer state, learning-rate schedule position and data order it had.

``fit`` runs in intervals of ``log_every`` steps (one Keras "epoch" each), so the losses
logged are means over each interval. A recorder callback appends metrics,
validates, writes samples and checkpoints, and honours a stop request before the next
step. It reads nothing from the device between logs, so training never waits on it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

import lmcore
from lmcore import LMError, corpus, data, device, distribute, public, runs
from lmcore import tokenizers as tok_mod
from lmcore.config import config_from_dict
from lmcore.config import make_config as make_model_config

Listener = Callable[[str, dict], None]  # (event, record): "log", "eval", "sample", "end"

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "exponential", "cosine")


@dataclass
class TrainConfig:
    """How to train; saved with the run. Learning rates are per optimizer step."""

    steps: int = 2000  # optimizer steps in all
    batch_size: int = 32  # windows per step
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3  # peak learning rate
    schedule: str = "constant"  # constant | exponential | cosine (with linear warm-up)
    warmup_steps: int = 0  # cosine: steps of linear warm-up from 0 to lr
    min_lr: float = 1e-4  # cosine: learning rate at the last step
    decay_steps: int = 100_000  # exponential: steps per decay (the tutorial's value)
    decay_rate: float = 0.96  # exponential: factor per decay_steps
    staircase: bool = True  # exponential: decay in whole steps
    weight_decay: float = 0.1  # adamw only
    clipnorm: float = 1.0  # gradient clipping by global norm (0 = off)
    log_every: int = 50  # steps per logged record
    eval_every: int = 250  # steps between validations (and checkpoints)
    eval_batches: int = 20  # validation batches (a fixed subset of the split)
    sample_length: int = 200  # tokens generated at each validation (0 = none)
    seed: int = 1337  # weights, data order and samples
    jit_compile: bool | None = None  # XLA; None = on for the GPT, off for the RNNs
    schedule_steps: int | None = None  # steps the LR schedule spans (None = steps; kept when extended)
    augment: dict = field(default_factory=dict)  # data.Augment fields, training windows only


@dataclass
class DataConfig:
    """Where the tokens come from."""

    source: str = corpus.DEFAULT_SOURCE  # corpus source string
    tokenizer: str = "char"  # char | word | bpe
    vocab_size: int | None = None  # word/bpe vocabulary size (None = default)
    text_column: str | None = None  # for CSV sources
    clean: dict = field(default_factory=dict)  # corpus.CleanOptions fields


# Per-model training defaults; the tutorial's own for seed-lstm (batch 32, Adam).
RECIPES = {
    "seed-lstm": dict(batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=50, min_lr=2e-4),
    "gru": dict(batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=50, min_lr=2e-4),
    "tiny": dict(batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20, min_lr=3e-4),
    "nano": dict(batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=100, min_lr=2e-4),
    "small": dict(
        batch_size=32, lr=1e-3, schedule="cosine", warmup_steps=200, min_lr=1e-4, optimizer="adamw"
    ),
}


def make_train_config(model_name: str, **overrides) -> TrainConfig:
    """The model's recipe with ``overrides`` (None values ignored), checked."""
    known = {f.name for f in fields(TrainConfig)}
    values = {
        **RECIPES.get(model_name, {}),
        **{k: v for k, v in overrides.items() if v is not None and k in known},
    }
    config = TrainConfig(**values)
    check_train_config(config)
    return config


def check_train_config(c: TrainConfig) -> None:
    problems = []
    if c.steps < 1:
        problems.append(f"steps must be at least 1, not {c.steps}")
    if c.batch_size < 1:
        problems.append(f"batch size must be at least 1, not {c.batch_size}")
    if not (math.isfinite(c.lr) and c.lr > 0):
        problems.append(f"learning rate must be a positive number, not {c.lr}")
    if c.optimizer not in OPTIMIZERS:
        problems.append(f"unknown optimizer {c.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if c.schedule not in SCHEDULES:
        problems.append(f"unknown schedule {c.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if c.log_every < 1 or c.eval_every < 1 or c.eval_batches < 1:
        problems.append("log_every, eval_every and eval_batches must be at least 1")
    if c.warmup_steps < 0 or c.min_lr < 0 or c.clipnorm < 0:
        problems.append("warmup_steps, min_lr and clipnorm cannot be negative")
    try:
        aug = data.Augment(**c.augment)
        if not all(0 <= p < 1 for p in (aug.delete, aug.substitute, aug.swap)):
            problems.append("augmentation probabilities must be in [0, 1)")
    except TypeError:
        problems.append(f"unknown augmentation settings {c.augment}")
    if not 0 <= c.seed < 2**32:
        problems.append(f"seed must be between 0 and 2**32 - 1, not {c.seed}")
    if problems:
        raise LMError("; ".join(problems))


# ---------------------------------------------------------------------------- memory

RUNTIME_BYTES = 800 * 2**20  # TensorFlow itself, the data and the traced graphs (measured ~0.8 GB)
XLA_BYTES = 300 * 2**20  # XLA compiling the GPT's step on a CPU (measured: +270 MB at nano's peak)


def parameter_count(m) -> int:
    """Weights of the model ``build_model(m)`` builds (checked against Keras in the tests)."""
    V, T, C, L = m.vocab_size, m.block_size, m.n_embd, m.n_layer
    if m.family == "gpt":  # tied embedding, positions, per block: 2 LayerNorm scales + 12 C^2
        return V * C + T * C + L * (2 * C + 12 * C * C) + C
    H = m.n_hidden
    gates = 4 if m.family == "lstm" else 3
    bias = H if m.family == "lstm" else 2 * H  # Keras' GRU keeps two biases (reset_after)
    rnn = sum(gates * ((C if i == 0 else H) * H + H * H + bias) for i in range(L))
    return V * C + rnn + H * V + V


def estimate_memory(m, c: TrainConfig) -> dict:
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
        total_mib = device.nvidia_smi("memory.total")
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
    left = device.cgroup_memory_left()  # a container's limit, when lower than the machine's
    if left is not None:
        available = min(available or 2**62, left)
    return (available if available is not None else 2**62), "memory available"


def check_memory(m, c: TrainConfig) -> dict:
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


def lr_schedule(c: TrainConfig):
    """The Keras learning-rate schedule for ``c`` (or a float for constant)."""
    import keras

    if c.schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            c.lr, decay_steps=c.decay_steps, decay_rate=c.decay_rate, staircase=c.staircase
        )
    if c.schedule == "cosine":
        span = c.schedule_steps or c.steps
        warmup = min(c.warmup_steps, max(span - 1, 0))
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else c.lr,
            decay_steps=max(span - warmup, 1),
            alpha=min(c.min_lr / c.lr, 1.0),
            warmup_target=c.lr if warmup else None,
            warmup_steps=warmup,
        )
    return c.lr


def lr_curve(c: TrainConfig, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(steps, learning rates) of the schedule, for a preview chart (NumPy, no TensorFlow)."""
    steps = np.unique(np.linspace(0, c.steps, points).astype(int))
    if c.schedule == "exponential":
        p = steps / c.decay_steps
        return steps, c.lr * c.decay_rate ** (np.floor(p) if c.staircase else p)
    if c.schedule == "cosine":
        span = c.schedule_steps or c.steps
        warmup = min(c.warmup_steps, max(span - 1, 0))
        alpha = min(c.min_lr / c.lr, 1.0)
        t = np.clip((steps - warmup) / max(span - warmup, 1), 0, 1)
        cos = c.lr * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * t)) + alpha)
        return steps, np.where(steps < warmup, c.lr * steps / max(warmup, 1), cos)
    return steps, np.full(len(steps), c.lr)


def _optimizer(c: TrainConfig):
    import keras

    clip = {"global_clipnorm": c.clipnorm} if c.clipnorm else {}
    lr = lr_schedule(c)
    if c.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=c.weight_decay, **clip)
    if c.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, **clip)
    return keras.optimizers.Adam(lr, **clip)


def compile_model(model, c: TrainConfig, family: str) -> None:
    """Compile for training; call it inside the strategy's scope when there is one."""
    import keras
    import tensorflow as tf

    # XLA speeds the GPT up by half on a CPU but halves the speed of Keras' LSTM loop there.
    jit = c.jit_compile if c.jit_compile is not None else family == "gpt"
    optimizer = _optimizer(c)
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        jit = False  # Keras does not XLA-compile a step that runs on several replicas
        distribute.clip_after_all_reduce(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit,
    )


def steps_per_execution(c: TrainConfig, start_step: int = 0, cap: int = 50) -> int:
    """Optimizer steps per call into the compiled training loop.

    Each call from Python into TensorFlow, with its round of callbacks, costs dispatch time
    comparable to a small model's step (50 steps per call trained ``nano`` at batch 12 1.2 to
    2.4 times faster than one, BENCHMARKS.md), so steps run in a graph loop of this many. It
    divides both ``log_every`` and the steps left, so logs and the end of training fall on
    call boundaries; a stop request does not wait for the call to end (:class:`StopGate`).
    """
    g = math.gcd(c.log_every, max(c.steps - start_step, 1))
    return max(d for d in range(1, min(g, cap) + 1) if g % d == 0)


# ---------------------------------------------------------------------------- the prepared job


@dataclass
class Job:
    """Everything training needs, checked, before (or after) the run folder exists."""

    model_name: str
    model_config: object
    train: TrainConfig
    data: DataConfig
    tokenizer: object
    text: str
    corpus_sha256: str
    train_ids: np.ndarray
    val_ids: np.ndarray
    notes: list[str] = field(default_factory=list)  # what decoding the corpus did, for the user

    def config_json(self, device: dict, parent: str | None = None) -> dict:
        return {
            "model_name": self.model_name,
            "model": asdict(self.model_config),
            "train": asdict(self.train),
            "data": {
                **asdict(self.data),
                "sha256": self.corpus_sha256,
                "train_tokens": int(len(self.train_ids)),
                "val_tokens": int(len(self.val_ids)),
            },
            "device": device,
            "parent": parent,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "lmcore_version": lmcore.__version__,
        }


def prepare(
    model_name: str,
    data_config: DataConfig,
    train_config: TrainConfig,
    block_size: int | None = None,
    model_overrides: dict | None = None,
    loaded: corpus.Corpus | None = None,
    progress: corpus.Progress | None = None,
) -> Job:
    """Load and tokenize the corpus and check every setting; creates nothing on disk."""
    make_model_config(model_name)  # an unknown name fails before any slow work
    check_train_config(train_config)
    clean = corpus.CleanOptions(**data_config.clean)
    if clean.remove_stopwords and data_config.tokenizer != "word":
        raise LMError("stop-word removal applies to the word tokenizer only")
    if loaded is None:
        loaded = corpus.load(
            data_config.source, text_column=data_config.text_column, options=clean, progress=progress
        )
    tokenizer = tok_mod.train(data_config.tokenizer, loaded.text, data_config.vocab_size)
    ids = tokenizer.encode(loaded.text)
    config = make_model_config(
        model_name, vocab_size=tokenizer.vocab_size, block_size=block_size, **(model_overrides or {})
    )
    train_ids, val_ids = data.split(ids)
    data.check_length(train_ids, val_ids, config.block_size)
    est = check_memory(config, train_config)
    notes = [*loaded.notes, *([est["note"]] if "note" in est else [])]
    return Job(
        model_name,
        config,
        train_config,
        data_config,
        tokenizer,
        loaded.text,
        loaded.sha256,
        train_ids,
        val_ids,
        notes,
    )


def _job_from_run(run_dir: Path) -> Job:
    """Rebuild the Job of an existing run from its files (for resume)."""
    config = runs.read_json(run_dir / "config.json")
    data_config = DataConfig(
        **{k: v for k, v in config["data"].items() if k in {f.name for f in fields(DataConfig)}}
    )
    saved = run_dir / "corpus.txt"
    if saved.is_file():
        with open(saved, encoding="utf-8", newline="") as f:
            text = f.read()
    else:
        text = corpus.load(
            data_config.source,
            text_column=data_config.text_column,
            options=corpus.CleanOptions(**data_config.clean),
        ).text
    loaded = corpus.Corpus(text, data_config.source)
    if loaded.sha256 != config["data"]["sha256"]:
        raise LMError(f"the corpus {data_config.source} has changed since run {run_dir.name} started")
    tokenizer = tok_mod.load(run_dir / "tokenizer.json")
    train_ids, val_ids = data.split(tokenizer.encode(text))
    return Job(
        config["model_name"],
        config_from_dict(config["model"]),
        TrainConfig(**config["train"]),
        data_config,
        tokenizer,
        text,
        loaded.sha256,
        train_ids,
        val_ids,
    )


# ---------------------------------------------------------------------------- recording


class StopGate:
    """Ends the training stream at a chosen step, so that a stop lands inside a graph loop.

    With several steps per call into the graph, Keras' loop ends early when its input runs
    out; the stream checks its step index against ``limit`` as each batch is taken, in the
    graph, so a stop request costs Python nothing until it happens.
    """

    def __init__(self, start_step: int):
        import tensorflow as tf

        self.start_step = start_step
        self.limit = tf.Variable(2**62, dtype=tf.int64, trainable=False)

    def wrap(self, ds):
        import tensorflow as tf

        steps = tf.data.Dataset.counter(start=self.start_step)
        gated = tf.data.Dataset.zip(ds, steps).take_while(lambda batch, step: step < self.limit)
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False  # check as taken, not ahead
        options.experimental_optimization.map_parallelization = False  # (both would run it early)
        return gated.map(lambda batch, step: batch).with_options(options)

    def stop_at(self, step: int) -> None:
        self.limit.assign(min(step, int(self.limit.numpy())))


def _make_recorder(
    run_dir: Path,
    job: Job,
    start_step: int,
    listener: Listener | None,
    stop_flag: threading.Event,
    gate: StopGate | None = None,
    limits: public.Limits | None = None,
):
    """A Keras callback that writes the run as it trains (built here to import Keras lazily)."""
    import keras
    import tensorflow as tf

    from lmcore import generate

    c = job.train
    T = job.model_config.block_size
    limits = limits or public.Limits()
    val_ds = data.val_dataset(job.val_ids, T, c.batch_size, c.eval_batches)
    prompt = job.tokenizer.decode(job.val_ids[: max(1, T // 2)])
    writer = tf.summary.create_file_writer(str(run_dir / "tb"))
    status = runs.read_status(run_dir)

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = start_step  # steps done, counted without reading the device
            self.logged_step = start_step
            self.eval_step = start_step
            self.t0 = self.t_log = time.perf_counter()
            self.best = status.get("best_val_loss") or math.inf
            self.last_val = status.get("val_loss")
            self.failure: str | None = None
            self.stopped = False
            self.elapsed0 = status.get("elapsed_s") or 0.0
            self.tokens_per_s = None
            self.logits_fn = None  # built at the first sample, then reused (one trace)
            self.stop_asked = threading.Event()  # set by the watcher thread or at a call boundary
            self.watcher_done = threading.Event()
            self.stop_reason: str | None = None  # why it stopped, when nobody asked (a time cap)

        def wants_stop(self) -> bool:
            if limits.time_up():
                self.stop_reason = limits.time_up_message()
                return True
            return stop_flag.is_set() or runs.stop_requested(run_dir)

        def ask_stop(self) -> None:
            """Let the step in progress finish, then end the stream (any thread)."""
            if not self.stop_asked.is_set():
                self.stop_asked.set()
                if gate is not None:
                    gate.stop_at(int(self.model.optimizer.iterations.numpy()) + 1)

        def watch(self) -> None:
            while not self.watcher_done.wait(0.2):
                if self.wants_stop():
                    self.ask_stop()
                    return

        def on_train_begin(self, logs=None):
            if gate is not None and self.model.steps_per_execution > 1:
                threading.Thread(target=self.watch, daemon=True).start()

        def on_train_end(self, logs=None):
            self.watcher_done.set()

        def on_train_batch_begin(self, batch, logs=None):
            self.step += self.model.steps_per_execution  # steps this call into the graph runs
            if self.step >= c.steps:
                self.model.stop_training = True
            elif self.stop_asked.is_set() or self.wants_stop():
                self.ask_stop()
                self.stopped = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            now = time.perf_counter()
            if self.stop_asked.is_set():  # the stream may have ended inside the last call
                self.stopped = True
                self.model.stop_training = True
                self.step = int(self.model.optimizer.iterations.numpy())
                if self.step == self.logged_step:  # nothing ran since the last log
                    if self.eval_step < self.step:
                        self.validate()  # the checkpoint a resume starts from
                    return
            steps = self.step - self.logged_step
            loss = float(logs.get("loss", math.nan))
            if not math.isfinite(loss):
                self.failure = (
                    f"the loss became {loss} between steps {self.logged_step} and "
                    f"{self.step}; lower the learning rate"
                )
                self.model.stop_training = True
                return
            self.tokens_per_s = steps * c.batch_size * T / max(now - self.t_log, 1e-9)
            record = {
                "step": self.step,
                "time": round(self.elapsed0 + now - self.t0, 3),
                "loss": loss,
                "bits": loss / math.log(2),
                "ppl": math.exp(min(loss, 50)),
                "acc": float(logs.get("accuracy", math.nan)),
                "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                "tokens_per_s": round(self.tokens_per_s, 1),
            }
            self.logged_step = self.step
            if self.step - self.eval_step >= c.eval_every or self.step >= c.steps or self.stopped:
                val = self.validate()
                if val is None:
                    self.failure = (
                        f"the validation loss became non-finite at step {self.step}; lower the learning rate"
                    )
                    self.model.stop_training = True
                    return
                record.update(val)
            runs.append_jsonl(run_dir / "metrics.jsonl", record)
            with writer.as_default():
                for key in ("loss", "bits", "acc", "lr", "tokens_per_s", "val_loss", "val_bits"):
                    if key in record:
                        tf.summary.scalar(key, record[key], step=self.step)
            runs.write_status(
                run_dir,
                "running",
                step=self.step,
                val_loss=self.last_val,
                best_val_loss=None if math.isinf(self.best) else self.best,
                elapsed_s=record["time"],
            )
            if listener:
                listener("log", record)
            self.t_log = time.perf_counter()  # validation time is not training time

        def validate(self) -> dict | None:
            """Score the validation windows, checkpoint, sample; None if the loss is not finite."""
            result = self.model.evaluate(val_ds, verbose=0, return_dict=True)
            val = float(result["loss"])
            if not math.isfinite(val):
                return None
            self.eval_step, self.last_val = self.step, val
            out = {
                "val_loss": val,
                "val_bits": val / math.log(2),
                "val_ppl": math.exp(min(val, 50)),
                "val_acc": float(result["accuracy"]),
            }
            runs.atomic_write(runs.checkpoint(run_dir, "last"), lambda p: self.model.save(p))
            if val < self.best:
                self.best = val
                runs.atomic_write(runs.checkpoint(run_dir, "best"), lambda p: self.model.save(p))
            if c.sample_length:
                # Short samples: not worth the XLA compilation.
                fn = self.logits_fn or generate.LogitsFn(self.model, asdict(job.model_config), jit=False)
                self.logits_fn = fn
                opts = generate.SamplingOptions(0.8, seed=c.seed)
                steps = generate.stream(self.logits_fn, job.tokenizer, prompt, c.sample_length, opts)
                sample = {
                    "step": self.step,
                    "prompt": prompt,
                    "text": job.tokenizer.decode([s.token_id for s in steps]),
                }
                runs.append_jsonl(run_dir / "samples.jsonl", sample)
                if listener:
                    listener("sample", sample)
            return out

    return Recorder(), writer


# ---------------------------------------------------------------------------- running


def _install_signal_handlers(stop_flag: threading.Event):
    """SIGINT/SIGTERM ask for a clean stop (checkpoint saved) instead of killing the run."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: stop_flag.set())

    def restore():
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _failure_message(err: BaseException) -> str:
    """The run's failure reason; running out of memory comes with what to change."""
    line = _first_line(err)
    if isinstance(err, MemoryError) or type(err).__name__ == "ResourceExhaustedError" or "OOM" in line:
        advice = "lower the batch size or the block size, or choose a smaller model"
        return f"out of memory ({line[:200]}); {advice}"
    return line


def _run(run_dir: Path, job: Job, make_model: Callable, start_step: int, listener: Listener | None) -> dict:
    """Train from ``start_step`` to ``job.train.steps``, recording into ``run_dir``.

    ``make_model()`` builds or loads the compiled model here, so that any failure from then
    on (a bad setting TensorFlow rejects, out of memory) is recorded as the run's status.
    """
    c = job.train
    T = job.model_config.block_size
    stop_flag = threading.Event()
    limits = public.Limits.from_env()  # a shared server's time cap, if it set one
    restore = _install_signal_handlers(stop_flag)
    runs.write_status(run_dir, "running", step=start_step, total_steps=c.steps)
    recorder = writer = None
    try:
        model = make_model()
        # Keras 3.15's multi-step loop fails on a distributed iterator ("must feed a value
        # for placeholder"), so several replicas go one step per call.
        several = model.distribute_strategy.num_replicas_in_sync > 1
        model.steps_per_execution = 1 if several else steps_per_execution(c, start_step)
        train_ds = data.train_dataset(
            job.train_ids,
            T,
            c.batch_size,
            seed=c.seed,
            start_step=start_step,
            aug=data.Augment(**c.augment),
            vocab_size=job.tokenizer.vocab_size,
        )
        if distribute.is_multiworker(model.distribute_strategy):
            distribute.prepare_multiworker(model, train_ds)
        gate = None if several else StopGate(start_step)
        if gate is not None:
            train_ds = gate.wrap(train_ds)
        recorder, writer = _make_recorder(run_dir, job, start_step, listener, stop_flag, gate, limits)
        intervals = math.ceil((c.steps - start_step) / c.log_every) + 1
        with warnings.catch_warnings():  # a stop ends the stream early, on purpose
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(
                train_ds,
                epochs=intervals,
                steps_per_epoch=c.log_every,
                verbose=0,
                shuffle=False,
                callbacks=[recorder],
            )
        failure = recorder.failure
    except Exception as err:  # recorded in the run's status; the caller gets a failed result
        failure = _failure_message(err)
        if os.environ.get("LMLAB_DEBUG"):
            traceback.print_exc()
    finally:
        if writer is not None:
            writer.close()
        restore()
        runs.clear_stop(run_dir)
    if failure:
        status = runs.write_status(run_dir, "failed", message=failure)
    else:
        status = runs.write_status(
            run_dir,
            "stopped" if recorder.step < c.steps else "completed",
            step=recorder.step,
            val_loss=recorder.last_val,
            best_val_loss=None if math.isinf(recorder.best) else recorder.best,
            tokens_per_s=recorder.tokens_per_s,
            message=recorder.stop_reason if recorder.step < c.steps else None,
        )
    result = {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "status": status["status"],
        "steps": status.get("step", start_step),
        "val_loss": status.get("val_loss"),
        "best_val_loss": status.get("best_val_loss"),
        "tokens_per_s": status.get("tokens_per_s"),
        "elapsed_s": status.get("elapsed_s"),
        "message": status.get("message"),
    }
    if listener:
        listener("end", result)
    return result


def _seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def start(
    job: Job,
    runs_root: Path,
    name: str | None = None,
    listener: Listener | None = None,
    parent: str | None = None,
    run_id: str | None = None,
    build: Callable | None = None,
    extra: dict | None = None,
    strategy: str = "auto",
) -> dict:
    """Create the run folder for a prepared job and train it.

    ``build()``, when given, makes the uncompiled model instead of a fresh one (fine-tuning
    builds it from a parent run); ``extra`` adds keys to the run's config.json.
    ``strategy`` is one of :data:`lmcore.distribute.STRATEGIES`.
    """
    from lmcore import models

    strat = distribute.make_strategy(strategy)  # before TensorFlow runs anything
    info = {**device.describe(), **distribute.describe(strat)}
    device.setup(info)
    run_dir = runs.create(runs_root, run_id or runs.new_run_id(job.model_name, name))
    with runs.training_lock(run_dir):
        runs.write_json(run_dir / "config.json", {**job.config_json(info, parent), **(extra or {})})
        tok_mod.save(job.tokenizer, run_dir / "tokenizer.json")
        if not job.data.source.startswith("builtin:"):
            with open(run_dir / "corpus.txt", "w", encoding="utf-8", newline="") as f:
                f.write(job.text)
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), **info})

        def make_model():
            _seed(job.train.seed)
            with strat.scope():
                model = build() if build else models.build_model(job.model_config)
                compile_model(model, job.train, job.model_config.family)
            return model

        return _run(run_dir, job, make_model, 0, listener)


def resume(
    run_dir: Path, steps: int | None = None, listener: Listener | None = None, strategy: str = "auto"
) -> dict:
    """Continue a stopped or interrupted run from its last checkpoint.

    ``steps`` raises the run's total number of steps (to extend a finished run); every other
    setting stays as it was, the learning-rate schedule included: steps beyond the schedule's
    end train at its final rate (``schedule_steps`` in the config records the span).
    """
    from lmcore import models

    if runs.read_status(run_dir).get("status") == "running":
        raise LMError(f"run {run_dir.name} is still training")
    with runs.training_lock(run_dir):
        runs.clear_stop(run_dir)  # a stop asked of an earlier process does not apply to this one
        runs.remove_partial_files(run_dir / "checkpoints")  # left by a process killed mid-write
        ckpt = runs.checkpoint(run_dir, "last")
        if not ckpt.is_file():
            raise LMError(f"run {run_dir.name} has no checkpoint to resume from")
        job = _job_from_run(run_dir)
        if steps is not None and steps < 1:
            raise LMError(f"steps must be at least 1, not {steps}")
        strat = distribute.make_strategy(strategy)
        device.setup(runs.read_json(run_dir / "config.json")["device"])
        try:
            with strat.scope():
                model = models.load_model(ckpt)
            if strat.num_replicas_in_sync > 1:
                model.jit_compile = False  # as compile_model does for several replicas
                distribute.clip_after_all_reduce(model.optimizer)
        except Exception as err:
            raise LMError(f"cannot load the checkpoint of run {run_dir.name}: {_first_line(err)}") from None
        start_step = int(model.optimizer.iterations.numpy())
        if start_step >= (steps or job.train.steps):
            raise LMError(
                f"run {run_dir.name} has already trained {start_step} steps; "
                f"pass --steps with more than {start_step} to continue"
            )
        if steps is not None and steps != job.train.steps:
            job.train.schedule_steps = job.train.schedule_steps or job.train.steps
            job.train.steps = steps
            config = runs.read_json(run_dir / "config.json")
            config["train"] = asdict(job.train)
            runs.write_json(run_dir / "config.json", config)
        # Records written after the checkpoint belong to training that is about to be redone.
        for name in ("metrics.jsonl", "samples.jsonl"):
            kept = [r for r in runs.read_jsonl(run_dir / name) if r.get("step", 0) <= start_step]
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
            runs.atomic_write(run_dir / name, lambda p, text=text: p.write_text(text, encoding="utf-8"))
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), "resumed_from": start_step})
        return _run(run_dir, job, lambda: model, start_step, listener)
