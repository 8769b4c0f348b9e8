"""The learning-rate schedule, written once: the optimizer follows it and the Train page draws it.

:func:`lr_at` is the formula, over any array module with NumPy's names (``numpy`` for the
page's preview, ``keras.ops`` inside the optimizer), so the curve a page shows is the one
training uses. Importing this module loads no TensorFlow; :func:`keras_schedule` imports
Keras when training asks for it.
"""

from __future__ import annotations

import numpy as np

from lmcore.nn.config import TrainConfig


def lr_at(c: TrainConfig, step, xp=np):
    """The learning rate at optimizer step ``step`` (a number or an array of them).

    constant: ``lr``. exponential (the tutorial's): ``lr * decay_rate ** (step / decay_steps)``,
    in whole decays when ``staircase``. cosine: a linear warm-up from 0 over ``warmup_steps``,
    then a half cosine from ``lr`` down to ``min_lr`` at ``schedule_steps`` (or ``steps``),
    flat after it.
    """
    step = xp.asarray(step, dtype="float32") if xp is np else xp.cast(step, "float32")
    if c.schedule == "exponential":
        p = step / c.decay_steps
        return c.lr * c.decay_rate ** (xp.floor(p) if c.staircase else p)
    if c.schedule == "cosine":
        span = c.schedule_steps or c.steps
        warmup = min(c.warmup_steps, max(span - 1, 0))
        alpha = min(c.min_lr / c.lr, 1.0)
        t = xp.clip((step - warmup) / max(span - warmup, 1), 0.0, 1.0)
        cosine = c.lr * ((1 - alpha) * 0.5 * (1 + xp.cos(np.pi * t)) + alpha)
        return xp.where(step < warmup, c.lr * step / max(warmup, 1), cosine)
    return c.lr + 0.0 * step


def lr_curve(c: TrainConfig, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(steps, learning rates) over the run, for a preview chart."""
    steps = np.unique(np.linspace(0, c.steps, points).astype(int))
    return steps, np.asarray(lr_at(c, steps), dtype=np.float64)


_KERAS_CLASS = None


def keras_class():
    """The Keras ``LearningRateSchedule`` around :func:`lr_at`, registered for checkpoints
    (a checkpoint stores its optimizer's schedule; loading one needs the class known)."""
    global _KERAS_CLASS
    if _KERAS_CLASS is None:
        import keras

        @keras.saving.register_keras_serializable(package="lmcore")
        class Schedule(keras.optimizers.schedules.LearningRateSchedule):
            """The run's learning-rate schedule (:func:`lmcore.nn.schedule.lr_at`)."""

            def __init__(self, config: dict):
                self.config = dict(config)
                self.c = TrainConfig(**self.config)

            def __call__(self, step):
                return lr_at(self.c, step, keras.ops)

            def get_config(self):
                return {"config": self.config}

        _KERAS_CLASS = Schedule
    return _KERAS_CLASS


def keras_schedule(c: TrainConfig):
    """The optimizer's learning rate for ``c``: a number when constant, else the schedule."""
    from dataclasses import asdict

    return c.lr if c.schedule == "constant" else keras_class()(asdict(c))
