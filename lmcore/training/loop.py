"""The training loop, written once for every task: language models, fine-tunes and classifiers.

In the manner of minGPT's trainer, it knows nothing of the task. :class:`Trainer` runs Keras
``fit`` in intervals of ``log_every`` steps (one Keras "epoch" each, several steps per call
into the compiled graph), and the module-level :class:`Recorder` callback writes the run as it
trains: ``metrics.jsonl``, TensorBoard, ``status.json``, the validations with their
checkpoints, and a stop (a ``STOP`` file, SIGINT or SIGTERM, a shared server's time cap)
honoured before the next step, its checkpoint saved. A failure (a non-finite loss, an
exception, running out of memory) becomes the run's status with its reason. It reads nothing
from the device between logs, so training never waits on it.

A :class:`Task` supplies what differs: what a record holds, how to validate, what is saved.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from lmcore import first_line, runs, xla_cache
from lmcore.nn import models, schedule
from lmcore.nn.config import TrainConfig
from lmcore.training import distribute

Listener = Callable[[str, dict], None]  # (event, record): "start", "log", "sample", "end"


class Task(Protocol):
    """What one kind of training supplies to the loop (the tasks live with their modules, which
    pages import without TensorFlow: :class:`lmcore.training.lm.LanguageModel`,
    :class:`lmcore.training.classify.Classification`)."""

    checkpoints: tuple[str, ...]  # saved at each validation: "last", and "best" (lowest loss)

    def record(self, logs: dict, steps: int, seconds: float) -> dict:
        """The figures of one interval of ``steps`` steps (``logs``: Keras' means), ``loss`` first."""

    def validate(self, model) -> dict:
        """Validation figures, ``val_loss`` among them."""

    def after_validation(self, model, step: int, run_dir: Path, listener: Listener | None) -> None:
        """Anything more at each validation (a language model writes a sample)."""

    def finish(self, model, run_dir: Path) -> dict:
        """At the end of a run that did not fail: final results, added to the result."""


# ---------------------------------------------------------------------------- compiling


@keras.saving.register_keras_serializable(package="lmcore")
class StepLosses(keras.metrics.Metric):
    """Each step's training loss within one logged interval, kept inside the compiled loop.

    With many steps per call into the graph, Keras hands Python only the interval's mean;
    this metric writes every step's loss into a vector the recorder reads once per interval,
    so the curves get a point per step without a device read per step. Keras resets it at
    each interval (one Keras epoch)."""

    def __init__(self, size: int, name: str = "step_losses", **kwargs):
        super().__init__(name=name, **kwargs)
        self.size = int(size)
        self.losses = self.add_variable(shape=(self.size,), initializer="zeros", name="losses")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True))
        slot = keras.ops.arange(self.size) == keras.ops.minimum(self.count, self.size - 1)
        self.losses.assign(keras.ops.where(slot, keras.ops.cast(loss, "float32"), self.losses))
        self.count.assign(self.count + 1)

    def result(self):
        n = keras.ops.maximum(keras.ops.cast(self.count, "float32"), 1.0)
        return keras.ops.sum(self.losses) / n

    def reset_state(self):
        self.losses.assign(keras.ops.zeros((self.size,)))
        self.count.assign(0)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def step_losses(model) -> StepLosses | None:
    """The model's StepLosses metric, if it was compiled with one (checkpoints from before it
    were not)."""
    todo = list(model.metrics)
    while todo:
        metric = todo.pop()
        if isinstance(metric, StepLosses):
            return metric
        todo += list(getattr(metric, "metrics", []) or [])
    return None


def make_optimizer(c: TrainConfig):
    clip = {"global_clipnorm": c.clipnorm} if c.clipnorm else {}
    lr = schedule.keras_schedule(c)
    if c.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=c.weight_decay, **clip)
    if c.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, **clip)
    if c.optimizer == "muon":  # Keras' Muon: AdamW steps for embeddings, norms, positions, the head
        return keras.optimizers.Muon(
            lr, weight_decay=0.0, adam_weight_decay=0.0, exclude_layers=["wpe", "head"], **clip
        )
    return keras.optimizers.Adam(lr, **clip)


def compile_model(model, c: TrainConfig, family: str) -> None:
    """Compile for training (cross-entropy on logits, accuracy); inside the strategy's scope."""
    # XLA speeds the GPT up by half on a CPU but halves the speed of Keras' LSTM loop there.
    jit = c.jit_compile if c.jit_compile is not None else family == "gpt"
    optimizer = make_optimizer(c)
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        jit = False  # Keras does not XLA-compile a step that runs on several replicas
        distribute.clip_after_all_reduce(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"), StepLosses(c.log_every)],
        jit_compile=jit,
    )


def fresh_model(c: TrainConfig, model_config, strategy, build: Callable | None = None):
    """A new compiled model under ``strategy``'s scope, seeded by ``c.seed``: ``build()`` when
    given (a child of a trained run), else the network ``model_config`` describes."""
    keras.utils.set_random_seed(c.seed)
    with strategy.scope():
        model = build() if build else models.build_model(model_config)
        compile_model(model, c, model_config.family)
    return model


def restored_model(checkpoint: Path, strategy):
    """A run's checkpoint with its optimizer state, under ``strategy``'s scope."""
    with strategy.scope():
        model = models.load_model(checkpoint)
    if strategy.num_replicas_in_sync > 1:
        model.jit_compile = False  # as compile_model does for several replicas
        distribute.clip_after_all_reduce(model.optimizer)
    return model


def build_state(model, dataset) -> None:
    """Create the optimizer's and the metrics' variables before the first call, from the
    stream's element shapes.

    Keras creates them only when no distribution strategy was set explicitly, and then inside
    the first trace of the training step, which TensorFlow must trace a second time once the
    variables exist: building them here saves that whole trace (3 to 4 s of ``modern-nano``'s
    start, BENCHMARKS.md). Keras' own symbolic build does it, as ``fit`` does under a strategy.
    """
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=dataset.element_spec)


def compiling_phase(label: str = "") -> str:
    """What the live view says while the first steps compile, with the time it took last
    time on this machine when known (the compilation cache makes it shorter)."""
    cache, seconds = xla_cache.status(), xla_cache.expected_compile(label)
    about = f" (about {seconds:.0f} s)" if seconds else ""
    if cache["folder"] is None:
        return f"compiling the training step{about}"
    if cache["entries"] == 0:
        return f"compiling the training step, for the first time on this machine{about}"
    return f"compiling the training step, from the compilation cache{about}"


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


class StopGate:
    """Ends the training stream at a chosen step, so that a stop lands inside a graph loop.

    With several steps per call into the graph, Keras' loop ends early when its input runs
    out; the stream checks its step index against ``limit`` as each batch is taken, in the
    graph, so a stop request costs Python nothing until it happens.
    """

    def __init__(self, start_step: int):
        self.start_step = start_step
        self.limit = tf.Variable(2**62, dtype=tf.int64, trainable=False)

    def wrap(self, ds):
        steps = tf.data.Dataset.counter(start=self.start_step)
        gated = tf.data.Dataset.zip(ds, steps).take_while(lambda batch, step: step < self.limit)
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False  # check as taken, not ahead
        options.experimental_optimization.map_parallelization = False  # (both would run it early)
        return gated.map(lambda batch, step: batch).with_options(options)

    def stop_at(self, step: int) -> None:
        self.limit.assign(min(step, int(self.limit.numpy())))


# ---------------------------------------------------------------------------- failures and signals


def install_signal_handlers(stop_flag: threading.Event):
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


def failure_message(err: BaseException) -> str:
    """The run's failure reason; running out of memory comes with what to change."""
    line = first_line(err)
    if isinstance(err, MemoryError) or type(err).__name__ == "ResourceExhaustedError" or "OOM" in line:
        advice = "lower the batch size or the block size, or choose a smaller model"
        return f"out of memory ({line[:200]}); {advice}"
    return line


# ---------------------------------------------------------------------------- the recorder


class Recorder(keras.callbacks.Callback):
    """Writes the run as it trains; asks the loop to stop; remembers why it ended."""

    def __init__(self, trainer: Trainer, gate: StopGate | None):
        super().__init__()
        self.t, self.gate = trainer, gate
        status = runs.read_status(trainer.run_dir)
        self.step = self.logged_step = self.eval_step = trainer.start_step  # counted, not read
        self.t0 = self.t_log = time.perf_counter()
        self.best = status.get("best_val_loss") or math.inf
        self.last_val = status.get("val_loss")
        self.elapsed0 = status.get("elapsed_s") or 0.0
        self.failure: str | None = None
        self.stopped = False
        self.stop_reason: str | None = None  # why it stopped when nobody asked (a time cap)
        self.speed = None  # the last interval's figure of speed (tokens or examples per second)
        self.stop_asked = threading.Event()  # set by the watcher thread or at a call boundary
        self.watcher_done = threading.Event()

    def wants_stop(self) -> bool:
        if self.t.limits is not None and self.t.limits.time_up():
            self.stop_reason = self.t.limits.time_up_message()
            return True
        return self.t.stop_flag.is_set() or runs.stop_requested(self.t.run_dir)

    def ask_stop(self) -> None:
        """Let the step in progress finish, then end the stream (any thread)."""
        if not self.stop_asked.is_set():
            self.stop_asked.set()
            if self.gate is not None:
                self.gate.stop_at(int(self.model.optimizer.iterations.numpy()) + 1)

    def watch(self) -> None:
        while not self.watcher_done.wait(0.2):
            if self.wants_stop():
                self.ask_stop()
                return

    def on_train_begin(self, logs=None):
        if self.gate is not None and self.model.steps_per_execution > 1:
            threading.Thread(target=self.watch, daemon=True).start()

    def on_train_end(self, logs=None):
        self.watcher_done.set()

    def on_train_batch_begin(self, batch, logs=None):
        self.step += self.model.steps_per_execution  # steps this call into the graph runs
        if self.step >= self.t.c.steps:
            self.model.stop_training = True
        elif self.stop_asked.is_set() or self.wants_stop():
            self.ask_stop()
            self.stopped = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if self.stop_asked.is_set():  # the stream may have ended inside the last call
            self.stopped = self.model.stop_training = True
            self.step = int(self.model.optimizer.iterations.numpy())
            if self.step == self.logged_step:  # nothing ran since the last log
                if self.eval_step < self.step and self.validate() is None:
                    self.fail(f"the validation loss became non-finite at step {self.step}")
                return
        if self.logged_step == self.t.start_step and self.t.fit_started is not None:  # the first interval
            xla_cache.note_compile(getattr(self.t.task, "label", ""), now - self.t.fit_started)
        record = self.t.task.record(logs or {}, self.step - self.logged_step, max(now - self.t_log, 1e-9))
        if not math.isfinite(record["loss"]):
            self.fail(f"the loss became {record['loss']} between steps {self.logged_step} and {self.step}")
            return
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record = {"step": self.step, "time": round(self.elapsed0 + now - self.t0, 3), **record, "lr": lr}
        record.update(self.per_step(self.step - self.logged_step))
        self.speed = record.get("tokens_per_s", record.get("examples_per_s"))
        self.logged_step = self.step
        c = self.t.c
        if self.step - self.eval_step >= c.eval_every or self.step >= c.steps or self.stopped:
            val = self.validate()
            if val is None:
                self.fail(f"the validation loss became non-finite at step {self.step}")
                return
            record.update(val)
        self.t.write_record(record, self.step, self.last_val, self.best)
        self.t_log = time.perf_counter()  # validation time is not training time

    def per_step(self, steps: int) -> dict:
        """This interval's loss at each step (read once from the graph) and the learning rate
        each step trained at (the schedule's formula, the one the optimizer follows)."""
        metric = self.t.losses_metric = self.t.losses_metric or step_losses(
            self.model
        )  # built at the first step
        if metric is None or steps <= 0 or steps > metric.size:
            return {}
        losses = keras.ops.convert_to_numpy(metric.losses)[:steps]
        first = self.logged_step + 1
        lrs = schedule.lr_at(self.t.c, np.arange(first - 1, first - 1 + steps))  # step s trains at lr(s-1)
        return {
            "step_losses": [round(float(v), 5) for v in losses],
            "step_lr": [float(f"{v:.6g}") for v in lrs],
        }

    def fail(self, what: str) -> None:
        self.failure = f"{what}; lower the learning rate"
        self.model.stop_training = True

    def validate(self) -> dict | None:
        """Validate, checkpoint, and whatever the task adds; None if the loss is not finite."""
        val = self.t.task.validate(self.model)
        if not math.isfinite(val["val_loss"]):
            return None
        self.eval_step, self.last_val = self.step, val["val_loss"]
        run_dir = self.t.run_dir
        if "last" in self.t.task.checkpoints:
            runs.atomic_write(runs.checkpoint(run_dir, "last"), lambda p: self.model.save(p))
        if val["val_loss"] < self.best:
            self.best = val["val_loss"]
            if "best" in self.t.task.checkpoints:
                runs.atomic_write(runs.checkpoint(run_dir, "best"), lambda p: self.model.save(p))
        self.t.task.after_validation(self.model, self.step, run_dir, self.t.listener)
        xla_cache.publish()  # the steps compiled so far serve the next process, even if this one dies
        return val


# ---------------------------------------------------------------------------- the loop


class Trainer:
    """Trains one run from ``start_step`` to ``c.steps``, recording into ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        task: Task,
        c: TrainConfig,
        start_step: int = 0,
        listener: Listener | None = None,
        limits=None,
    ):
        """``limits``: a shared server's caps (:class:`lmcore.jobs.public.Limits`), or None."""
        self.run_dir, self.task, self.c = run_dir, task, c
        self.start_step, self.listener = start_step, listener
        self.stop_flag = threading.Event()
        self.limits = limits
        self.writer = None
        self.losses_metric: StepLosses | None = None
        self.fit_started: float | None = None  # when the first call into the graph began

    def write_record(self, record: dict, step: int, val_loss, best: float) -> None:
        """One logged interval: metrics.jsonl, TensorBoard, the status, the listener."""
        runs.append_jsonl(self.run_dir / runs.METRICS, record)
        with self.writer.as_default():
            for key, value in record.items():
                if key not in ("step", "time") and isinstance(value, int | float):
                    tf.summary.scalar(key, value, step=step)
            first = step - len(record.get("step_losses", [])) + 1
            for i, (loss, lr) in enumerate(
                zip(record.get("step_losses", []), record.get("step_lr", []), strict=True)
            ):
                tf.summary.scalar("step_loss", loss, step=first + i)
                tf.summary.scalar("step_lr", lr, step=first + i)
        runs.write_status(
            self.run_dir,
            "running",
            step=step,
            val_loss=val_loss,
            best_val_loss=None if math.isinf(best) else best,
            elapsed_s=record["time"],
            phase=None,  # training
        )
        if self.listener:
            self.listener("log", record)

    def first_point(self, model) -> None:
        """The untrained model's validation, logged as step 0 before the first step: the
        curve starts seconds after the launch instead of after a compiled interval. It
        compiles the validation step, which the first validation would compile anyway."""
        runs.write_status(self.run_dir, "running", step=0, phase="measuring the untrained model")
        val = self.task.validate(model)
        if math.isfinite(val["val_loss"]):
            runs.append_jsonl(self.run_dir / runs.METRICS, {"step": 0, "time": 0.0, **val})
            if self.listener:
                self.listener("log", {"step": 0, "time": 0.0, **val})

    def run(self, make_model: Callable, make_dataset: Callable) -> dict:
        """``make_model()`` builds or loads the compiled model, ``make_dataset(start_step)`` the
        endless training stream; both are called here, so that any failure from then on (a
        setting TensorFlow rejects, running out of memory) is recorded as the run's status."""
        c = self.c
        restore = install_signal_handlers(self.stop_flag)
        runs.write_status(
            self.run_dir, "running", step=self.start_step, total_steps=c.steps, phase="building the model"
        )
        recorder, model, extra = None, None, {}
        self.writer = tf.summary.create_file_writer(str(self.run_dir / runs.EVENTS))
        try:
            model = make_model()
            # Keras 3.15's multi-step loop fails on a distributed iterator ("must feed a value
            # for placeholder"), so several replicas go one step per call.
            several = model.distribute_strategy.num_replicas_in_sync > 1
            model.steps_per_execution = 1 if several else steps_per_execution(c, self.start_step)
            train_ds = make_dataset(self.start_step)
            if not distribute.is_multiworker(model.distribute_strategy):  # its own build and collectives
                build_state(model, train_ds)
                if self.start_step == 0:
                    self.first_point(model)
            label = getattr(self.task, "label", "")
            runs.write_status(self.run_dir, "running", step=self.start_step, phase=compiling_phase(label))
            self.fit_started = time.perf_counter()
            if distribute.is_multiworker(model.distribute_strategy):
                distribute.prepare_multiworker(model, train_ds)
            gate = None if several else StopGate(self.start_step)
            if gate is not None:
                train_ds = gate.wrap(train_ds)
            recorder = Recorder(self, gate)
            with warnings.catch_warnings():  # a stop ends the stream early, on purpose
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                model.fit(
                    train_ds,
                    epochs=math.ceil((c.steps - self.start_step) / c.log_every) + 1,
                    steps_per_epoch=c.log_every,
                    verbose=0,
                    shuffle=False,
                    callbacks=[recorder],
                )
            failure = recorder.failure
            if not failure:
                extra = self.task.finish(model, self.run_dir)
        except Exception as err:  # recorded in the run's status; the caller gets a failed result
            failure = failure_message(err)
            if os.environ.get("LMLAB_DEBUG"):
                traceback.print_exc()
        finally:
            self.writer.close()
            restore()
            runs.clear_stop(self.run_dir)
        return self._end(recorder, failure, extra)

    def _end(self, recorder: Recorder | None, failure: str | None, extra: dict) -> dict:
        if failure:
            status = runs.write_status(self.run_dir, "failed", message=failure, phase=None)
        else:
            done = recorder.step >= self.c.steps
            status = runs.write_status(
                self.run_dir,
                "completed" if done else "stopped",
                step=recorder.step,
                val_loss=recorder.last_val,
                best_val_loss=None if math.isinf(recorder.best) else recorder.best,
                tokens_per_s=recorder.speed,
                message=None if done else recorder.stop_reason,
                phase=None,
                **{k: v for k, v in extra.items() if k in ("accuracy", "macro_f1")},
            )
        result = {
            "run_id": self.run_dir.name,
            "run_dir": str(self.run_dir),
            "status": status["status"],
            "steps": status.get("step", self.start_step),
            "val_loss": status.get("val_loss"),
            "best_val_loss": status.get("best_val_loss"),
            "tokens_per_s": status.get("tokens_per_s"),
            "elapsed_s": status.get("elapsed_s"),
            "message": status.get("message"),
            **extra,
        }
        if self.listener:
            self.listener("end", result)
        return result
