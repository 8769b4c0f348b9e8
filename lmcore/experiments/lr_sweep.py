"""The learning-rate sweep: what too large a rate really does, beside the schedules that work.

The tutorial (section 5.5.1) says too large a learning rate makes a model overfit. Overfitting
is a model that fits its training text better and better while its validation loss turns
up. Too large a rate does something else: the training loss itself stops falling (it stalls)
or blows up (it diverges), so the model fits nothing. :data:`VARIANTS` trains the same small
GPT on the same corpus for the same few steps at rates a hundredfold apart with a constant
rate, then at a good rate with the decaying schedules the tutorial recommends;
:func:`verdict` names what each run did, from its own curve. TensorFlow-free, for the tour.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from lmcore import runs
from lmcore.jobs import specs
from lmcore.nn.config import DataConfig, make_train_config

MODEL = "tiny"  # the smallest GPT: each run takes seconds, so the sweep fits in a tour
NAME = "lr-sweep"
GOOD = 3e-3  # the rate the decaying schedules start from
VARIANTS = (  # (label, the training settings that differ)
    ("constant 3e-4 (small)", dict(lr=3e-4, schedule="constant", warmup_steps=0)),
    ("constant 3e-3", dict(lr=GOOD, schedule="constant", warmup_steps=0)),
    ("constant 3e-2 (large)", dict(lr=3e-2, schedule="constant", warmup_steps=0)),
    ("constant 0.3 (far too large)", dict(lr=0.3, schedule="constant", warmup_steps=0)),
    ("exponential decay from 3e-3 to 3e-4", dict(lr=GOOD, schedule="exponential", warmup_steps=0)),
    ("cosine from 3e-3, 10% warm-up", dict(lr=GOOD, schedule="cosine", min_lr=GOOD / 10)),
)
STALL_MARGIN = 0.1  # nats: a training loss this close to the unigram entropy has learned nothing more
OVERFIT_RISE = 0.05  # nats: a validation loss this far above its best while training falls: overfitting


def sweep_specs(source: str, steps: int = 300, seed: int = 1337) -> list[specs.TrainSpec]:
    """One short run per variant on ``source``, validated often enough to draw a curve."""
    every = max(steps // 6, 1)
    out = []
    for i, (_, settings) in enumerate(VARIANTS):
        c = make_train_config(MODEL, steps=steps, seed=seed, log_every=every, eval_every=every)
        c = replace(c, sample_length=0, **settings)
        if c.schedule == "cosine":
            c = replace(c, warmup_steps=max(steps // 10, 1))
        if c.schedule == "exponential":  # smooth, a tenfold decay over the run
            c = replace(c, decay_steps=steps, decay_rate=0.1, staircase=False)
        out.append(specs.TrainSpec(MODEL, DataConfig(source), c, name=f"{NAME}-{i}"))
    return out


def variant_of(run_id: str) -> int | None:
    """Which variant a run is, from its id (``<time>-lr-sweep-<i>-<hash>``); None if none."""
    found = re.search(rf"-{NAME}-(\d+)-[0-9a-f]+$", run_id)
    return int(found[1]) if found and int(found[1]) < len(VARIANTS) else None


def verdict(metrics: list[dict], status: dict, unigram: float | None = None) -> str:
    """What the run did, read from its curve and status: diverged; stalled or slow (a training
    loss still near ``unigram``, the corpus's unigram entropy in nats, flat or still falling);
    overfitting (validation rising from its best while training falls); or learning."""
    if status.get("status") == "failed":  # the loop stops a run whose loss is no longer finite
        message = str(status.get("message", "failed"))
        return "diverged: " + message.split(";")[0] if "became" in message else message
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    vals = [m["val_loss"] for m in metrics if m.get("val_loss") is not None]
    if any(not math.isfinite(v) for v in losses + vals):
        return "diverged: the loss became infinite or not a number"
    if len(losses) < 2 or len(vals) < 2:
        return "too early to tell"
    recent = losses[-1 - max(len(losses) // 3, 1)] - losses[-1]  # training's fall over the last third
    if unigram is not None and losses[-1] > unigram - STALL_MARGIN:
        if recent > STALL_MARGIN:
            return f"slow: training {losses[-1]:.2f} is still falling ({recent:.2f} in the last third)"
        return (
            f"stalled: training stays at {losses[-1]:.2f}, about the unigram entropy ({unigram:.2f}): "
            "it learned how often each character occurs, not what follows what"
        )
    if vals[-1] > min(vals) + OVERFIT_RISE and losses[-1] < losses[-2]:
        return f"overfitting: validation rose from {min(vals):.2f} to {vals[-1]:.2f} while training fell"
    return f"learning: validation from {vals[0]:.2f} to {vals[-1]:.2f}"


def table(run_dirs, unigram: float | None = None) -> list[dict]:
    """A row per sweep run: its variant, rate and schedule, losses, and what it did."""
    rows = []
    for run_dir in run_dirs:
        index, record = variant_of(run_dir.name), runs.read_record(run_dir)
        if index is None or record is None:
            continue
        metrics = runs.read_jsonl(run_dir / runs.METRICS)
        status = runs.read_status(run_dir)
        losses = [m["loss"] for m in metrics if m.get("loss") is not None]
        vals = [m["val_loss"] for m in metrics if m.get("val_loss") is not None]
        rows.append(
            {
                "run": run_dir.name,
                "variant": VARIANTS[index][0],
                "lr": record.train.lr,
                "schedule": record.train.schedule,
                "status": status.get("status", ""),
                "last train loss": losses[-1] if losses else None,
                "best val loss": min(vals) if vals else None,
                "what it did": verdict(metrics, status, unigram),
            }
        )
    return rows
