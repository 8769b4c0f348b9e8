"""Language-model runs: a prepared job (:mod:`lmcore.training.lmdata`) trained with the one loop.

:func:`start` creates the run and trains it; :func:`start_child` does the same for a child
of a trained run (fine-tuning: :mod:`lmcore.training.finetune` prepares it);
:func:`resume` continues a stopped or interrupted run from its last checkpoint, with the
optimizer state, learning-rate schedule position and data order it had.

:class:`LanguageModel` is the task the loop (:mod:`lmcore.training.loop`) runs: next-token
targets at every position, the losses logged as means over each interval, a validation on
fixed windows with a checkpoint and a short sample. Importing this module loads no TensorFlow;
training does.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from lmcore import LMError, device, first_line, runs
from lmcore.generation import decoding
from lmcore.text import tokenizers, windows
from lmcore.training import distribute, transfer
from lmcore.training.lmdata import Job, job_from_run

# ---------------------------------------------------------------------------- the task


class LanguageModel:
    """Next-token prediction: what :class:`lmcore.training.loop.Trainer` needs to train a job."""

    checkpoints = ("last", "best")

    def __init__(self, job: Job):
        self.job = job
        self.label = job.model_name  # what the compile time is remembered under
        T = job.model_config.block_size
        self.val_ds = windows.val_dataset(job.val_ids, T, job.train.batch_size, job.train.eval_batches)
        self.prompt = job.tokenizer.decode(job.val_ids[: max(1, T // 2)])
        self.logits_fn = None  # built at the first sample, then reused (one trace)

    def dataset(self, start_step: int):
        c, job = self.job.train, self.job
        return windows.train_dataset(
            job.train_ids,
            job.model_config.block_size,
            c.batch_size,
            seed=c.seed,
            start_step=start_step,
            aug=windows.Augment(**c.augment),
            vocab_size=job.tokenizer.vocab_size,
        )

    def record(self, logs: dict, steps: int, seconds: float) -> dict:
        loss = float(logs.get("loss", math.nan))
        tokens = steps * self.job.train.batch_size * self.job.model_config.block_size
        return {
            "loss": loss,
            "bits": loss / math.log(2),
            "ppl": math.exp(min(loss, 50)) if math.isfinite(loss) else loss,
            "acc": float(logs.get("accuracy", math.nan)),
            "tokens_per_s": round(tokens / seconds, 1),
        }

    def validate(self, model) -> dict:
        result = model.evaluate(self.val_ds, verbose=0, return_dict=True)
        val = float(result["loss"])
        return {
            "val_loss": val,
            "val_bits": val / math.log(2),
            "val_ppl": math.exp(min(val, 50)) if math.isfinite(val) else val,
            "val_acc": float(result["accuracy"]),
        }

    def after_validation(self, model, step: int, run_dir: Path, listener) -> None:
        """A short sample from the model as it is now (no XLA: not worth compiling)."""
        c, tokenizer = self.job.train, self.job.tokenizer
        if not c.sample_length:
            return
        self.logits_fn = self.logits_fn or decoding.LogitsFn(model, self.job.model_config, jit=False)
        opts = decoding.SamplingOptions(0.8, seed=c.seed)
        steps = decoding.stream(self.logits_fn, tokenizer, self.prompt, c.sample_length, opts)
        sample = {"step": step, "prompt": self.prompt, "text": tokenizer.decode([s.token_id for s in steps])}
        runs.append_jsonl(run_dir / runs.SAMPLES, sample)
        if listener:
            listener("sample", sample)

    def finish(self, model, run_dir: Path) -> dict:
        return {}


# ---------------------------------------------------------------------------- running


def start(
    job: Job,
    runs_root: Path,
    name: str | None = None,
    listener=None,
    parent: str | None = None,
    run_id: str | None = None,
    build=None,
    lineage: dict | None = None,
    strategy: str = "auto",
    limits=None,
) -> dict:
    """Create the run folder for a prepared job and train it.

    ``build()``, when given, makes the uncompiled model instead of a fresh one (fine-tuning
    builds it from a parent run); ``lineage`` adds ``finetune`` and ``comparison`` to the
    run's record. ``strategy`` is one of :data:`lmcore.training.distribute.STRATEGIES`;
    ``limits`` are a shared server's caps (:class:`lmcore.jobs.public.Limits`), if any.
    """
    from lmcore.training import loop  # TensorFlow, to train: not at the command line's start

    strat = distribute.make_strategy(strategy)  # before TensorFlow runs anything
    info = {**device.describe(), **distribute.describe(strat)}
    device.setup(info)
    unused = device.unused_gpu_message(len(info["gpus"]))
    if unused:
        print(f"note: {unused}", file=sys.stderr)
    run_dir = runs.create(runs_root, run_id or runs.new_run_id(job.model_name, name))
    with runs.training_lock(run_dir):
        runs.write_record(run_dir, job.record(info, parent, **(lineage or {})))
        tokenizers.save(job.tokenizer, run_dir / runs.TOKENIZER)
        if not job.data.source.startswith("builtin:"):
            with open(run_dir / runs.CORPUS, "w", encoding="utf-8", newline="") as f:
                f.write(job.text)
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), **info})

        def make_model():
            return loop.fresh_model(job.train, job.model_config, strat, build)

        task = LanguageModel(job)
        return loop.Trainer(run_dir, task, job.train, 0, listener, limits).run(make_model, task.dataset)


def start_child(
    parent: transfer.Parent,
    job: Job,
    record: dict,
    root: Path,
    name: str | None = None,
    listener=None,
    run_id: str | None = None,
    scratch: bool = False,
    comparison: dict | None = None,
    limits=None,
) -> dict:
    """Create a child run of ``parent`` (a job from :func:`lmcore.training.finetune.prepare`) and
    train it like any other run; ``scratch`` trains the same network from fresh weights."""
    s = transfer.Surgery(record["freeze"], record["drop_top"], record["add_layers"])
    if scratch:
        record = {**record, "scratch": True}
    result = start(
        job,
        root,
        name or f"ft-{job.model_name}",
        listener=listener,
        parent=None if scratch else parent.run_dir.name,
        run_id=run_id,
        build=lambda: transfer.build_from_parent(parent, s, scratch=scratch),
        lineage={"finetune": record, "comparison": comparison},
        limits=limits,
    )
    return {**result, "parent": None if scratch else parent.run_dir.name, "oov": record["oov"]}


def resume(
    run_dir: Path, steps: int | None = None, listener=None, strategy: str = "auto", limits=None
) -> dict:
    """Continue a stopped or interrupted run from its last checkpoint.

    ``steps`` raises the run's total number of steps (to extend a finished run); every other
    setting stays as it was, the learning-rate schedule included: steps beyond the schedule's
    end train at its final rate (``schedule_steps`` in the record keeps the span).
    """
    from lmcore.training import loop  # TensorFlow, to train: not at the command line's start

    if runs.read_status(run_dir).get("status") == "running":
        raise LMError(f"run {run_dir.name} is still training")
    with runs.training_lock(run_dir):
        runs.clear_stop(run_dir)  # a stop asked of an earlier process does not apply to this one
        runs.remove_partial_files(run_dir / runs.CHECKPOINTS)  # left by a process killed mid-write
        ckpt = runs.checkpoint(run_dir, "last")
        if not ckpt.is_file():
            raise LMError(f"run {run_dir.name} has no checkpoint to resume from")
        record = runs.read_record(run_dir)
        job = job_from_run(run_dir, record)
        if steps is not None and steps < 1:
            raise LMError(f"steps must be at least 1, not {steps}")
        strat = distribute.make_strategy(strategy)
        device.setup(record.device)
        try:
            model = loop.restored_model(ckpt, strat)
        except Exception as err:
            raise LMError(f"cannot load the checkpoint of run {run_dir.name}: {first_line(err)}") from None
        start_step = int(model.optimizer.iterations.numpy())
        if start_step >= (steps or job.train.steps):
            raise LMError(
                f"run {run_dir.name} has already trained {start_step} steps; "
                f"pass --steps with more than {start_step} to continue"
            )
        if steps is not None and steps != job.train.steps:
            job.train.schedule_steps = job.train.schedule_steps or job.train.steps
            job.train.steps = steps
            runs.write_record(run_dir, replace(record, train=job.train))
        # Records written after the checkpoint belong to training that is about to be redone.
        for name in (runs.METRICS, runs.SAMPLES):
            kept = [r for r in runs.read_jsonl(run_dir / name) if r.get("step", 0) <= start_step]
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
            runs.atomic_write(run_dir / name, lambda p, text=text: p.write_text(text, encoding="utf-8"))
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), "resumed_from": start_step})
        task = LanguageModel(job)
        trainer = loop.Trainer(run_dir, task, job.train, start_step, listener, limits)
        return trainer.run(lambda: model, task.dataset)
