"""Language-model training: prepare a job, then train it with the one loop (:mod:`lmcore.trainer`).

:func:`prepare` loads and tokenizes the corpus and checks every setting (window length,
model, memory) before a run folder exists, so bad input leaves nothing behind; :func:`start`
creates the run and trains it; :func:`resume` continues a stopped or interrupted run from its
last checkpoint, with the optimizer state, learning-rate schedule position and data order it
had. :func:`preflight` is the same checks for a form, before a job is even submitted.

:class:`LanguageModel` is the task the loop runs: next-token targets at every position, the
losses logged as means over each interval, a validation on fixed windows with a checkpoint
and a short sample. Importing this module loads no TensorFlow (pages call the preflight);
training imports it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lmcore import LMError, corpus, data, device, distribute, runs
from lmcore import tokenizers as tok_mod
from lmcore.config import DataConfig, TrainConfig, check_train_config
from lmcore.config import make_config as make_model_config
from lmcore.runs import DataRecord, RunRecord

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

    def record(self, device_info: dict, parent: str | None = None, **lineage) -> RunRecord:
        """The run's record for this job (``lineage``: ``finetune``, ``comparison``)."""
        figures = dict(
            sha256=self.corpus_sha256, train_tokens=len(self.train_ids), val_tokens=len(self.val_ids)
        )
        return RunRecord(
            self.model_name,
            self.model_config,
            self.train,
            DataRecord(
                **asdict(self.data), **{k: int(v) if k != "sha256" else v for k, v in figures.items()}
            ),
            device_info,
            parent=parent,
            **lineage,
        )


def steps_for_epochs(epochs: float, train_tokens: int, batch_size: int, block_size: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``train_tokens`` in (batch x block) windows."""
    if not (math.isfinite(epochs) and epochs > 0):
        raise LMError(f"--epochs must be positive, not {epochs}")
    return max(1, math.ceil(epochs * train_tokens / (batch_size * block_size)))


def prepare(
    model_name: str,
    data_config: DataConfig,
    train_config: TrainConfig,
    block_size: int | None = None,
    model_overrides: dict | None = None,
    loaded: corpus.Corpus | None = None,
    progress: corpus.Progress | None = None,
    epochs: float | None = None,
) -> Job:
    """Load and tokenize the corpus and check every setting; creates nothing on disk.

    ``epochs``, when given, sets the steps from the training tokens (after tokenizing).
    """
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
    check = preflight(config, train_config, len(train_ids), len(val_ids), epochs)
    notes = [*loaded.notes, *([check.estimate["note"]] if "note" in check.estimate else [])]
    return Job(
        model_name,
        config,
        check.train,
        data_config,
        tokenizer,
        loaded.text,
        loaded.sha256,
        train_ids,
        val_ids,
        notes,
    )


@dataclass
class Preflight:
    """What the checks before training found: the steps, the memory, the settings to train with."""

    steps: int
    estimate: dict  # device.estimate_memory's, with "note" when XLA goes off to fit
    train: TrainConfig  # the settings given, with the steps of the epochs and XLA as it fits
    steps_estimated: bool = False  # epochs turned into steps from the text's length, not its tokens


def preflight(
    model_config,
    train_config: TrainConfig,
    train_tokens: int | None = None,
    val_tokens: int | None = None,
    epochs: float | None = None,
) -> Preflight:
    """The checks before training, made by the trainer and by the forms alike: the window
    length (where the tokens are counted), the steps of ``epochs``, and the memory."""
    c = replace(train_config)
    if train_tokens is not None:
        data.check_length(range(train_tokens), range(val_tokens), model_config.block_size)
        if epochs is not None:
            c.steps = steps_for_epochs(epochs, train_tokens, c.batch_size, model_config.block_size)
    return Preflight(c.steps, device.check_memory(model_config, c), c)


def form_preflight(
    model_name: str,
    tokenizer: str,
    train_config: TrainConfig,
    text: str,
    block_size: int | None = None,
    epochs: float | None = None,
    vocab_size: int | None = None,
) -> Preflight:
    """:func:`preflight` for a form, from the text alone (no tokenizer trained): exact for
    characters (a token each); for words and BPE, the tokenizer's default vocabulary (or
    ``vocab_size``) and steps estimated from the characters. ``vocab_size`` may also pass the
    characters already counted."""
    if vocab_size is None:
        vocab_size = len(set(text)) if tokenizer == "char" else tok_mod.DEFAULT_VOCAB[tokenizer]
    config = make_model_config(model_name, vocab_size=max(vocab_size, 1), block_size=block_size)
    train_part, val_part = data.split(range(len(text)))
    if tokenizer == "char":
        return preflight(config, train_config, len(train_part), len(val_part), epochs)
    check = preflight(config, train_config)
    if epochs is not None:
        check.steps = check.train.steps = steps_for_epochs(
            epochs, len(train_part), train_config.batch_size, config.block_size
        )
        check.steps_estimated = True
    return check


def job_from_run(run_dir: Path, record: RunRecord) -> Job:
    """Rebuild the Job of an existing run from its files (for resume)."""
    data_config = record.data.config()
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
    if loaded.sha256 != record.data.sha256:
        raise LMError(f"the corpus {data_config.source} has changed since run {run_dir.name} started")
    tokenizer = tok_mod.load(run_dir / "tokenizer.json")
    train_ids, val_ids = data.split(tokenizer.encode(text))
    return Job(
        record.model_name,
        record.model,
        record.train,
        data_config,
        tokenizer,
        text,
        loaded.sha256,
        train_ids,
        val_ids,
    )


# ---------------------------------------------------------------------------- the task


class LanguageModel:
    """Next-token prediction: what :class:`lmcore.trainer.Trainer` needs to train a job."""

    checkpoints = ("last", "best")

    def __init__(self, job: Job):
        self.job = job
        T = job.model_config.block_size
        self.val_ds = data.val_dataset(job.val_ids, T, job.train.batch_size, job.train.eval_batches)
        self.prompt = job.tokenizer.decode(job.val_ids[: max(1, T // 2)])
        self.logits_fn = None  # built at the first sample, then reused (one trace)

    def dataset(self, start_step: int):
        c, job = self.job.train, self.job
        return data.train_dataset(
            job.train_ids,
            job.model_config.block_size,
            c.batch_size,
            seed=c.seed,
            start_step=start_step,
            aug=data.Augment(**c.augment),
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
        from lmcore import generate

        c, tokenizer = self.job.train, self.job.tokenizer
        if not c.sample_length:
            return
        self.logits_fn = self.logits_fn or generate.LogitsFn(model, self.job.model_config, jit=False)
        opts = generate.SamplingOptions(0.8, seed=c.seed)
        steps = generate.stream(self.logits_fn, tokenizer, self.prompt, c.sample_length, opts)
        sample = {"step": step, "prompt": self.prompt, "text": tokenizer.decode([s.token_id for s in steps])}
        runs.append_jsonl(run_dir / "samples.jsonl", sample)
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
) -> dict:
    """Create the run folder for a prepared job and train it.

    ``build()``, when given, makes the uncompiled model instead of a fresh one (fine-tuning
    builds it from a parent run); ``lineage`` adds ``finetune`` and ``comparison`` to the
    run's record. ``strategy`` is one of :data:`lmcore.distribute.STRATEGIES`.
    """
    import keras

    from lmcore import models, trainer

    strat = distribute.make_strategy(strategy)  # before TensorFlow runs anything
    info = {**device.describe(), **distribute.describe(strat)}
    device.setup(info)
    unused = device.unused_gpu_message(len(info["gpus"]))
    if unused:
        print(f"note: {unused}", file=sys.stderr)
    run_dir = runs.create(runs_root, run_id or runs.new_run_id(job.model_name, name))
    with runs.training_lock(run_dir):
        runs.write_record(run_dir, job.record(info, parent, **(lineage or {})))
        tok_mod.save(job.tokenizer, run_dir / "tokenizer.json")
        if not job.data.source.startswith("builtin:"):
            with open(run_dir / "corpus.txt", "w", encoding="utf-8", newline="") as f:
                f.write(job.text)
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), **info})

        def make_model():
            keras.utils.set_random_seed(job.train.seed)
            with strat.scope():
                model = build() if build else models.build_model(job.model_config)
                trainer.compile_model(model, job.train, job.model_config.family)
            return model

        task = LanguageModel(job)
        return trainer.Trainer(run_dir, task, job.train, 0, listener).run(make_model, task.dataset)


def resume(run_dir: Path, steps: int | None = None, listener=None, strategy: str = "auto") -> dict:
    """Continue a stopped or interrupted run from its last checkpoint.

    ``steps`` raises the run's total number of steps (to extend a finished run); every other
    setting stays as it was, the learning-rate schedule included: steps beyond the schedule's
    end train at its final rate (``schedule_steps`` in the record keeps the span).
    """
    from lmcore import models, trainer

    if runs.read_status(run_dir).get("status") == "running":
        raise LMError(f"run {run_dir.name} is still training")
    with runs.training_lock(run_dir):
        runs.clear_stop(run_dir)  # a stop asked of an earlier process does not apply to this one
        runs.remove_partial_files(run_dir / "checkpoints")  # left by a process killed mid-write
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
            with strat.scope():
                model = models.load_model(ckpt)
            if strat.num_replicas_in_sync > 1:
                model.jit_compile = False  # as compile_model does for several replicas
                distribute.clip_after_all_reduce(model.optimizer)
        except Exception as err:
            raise LMError(
                f"cannot load the checkpoint of run {run_dir.name}: {trainer.first_line(err)}"
            ) from None
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
        for name in ("metrics.jsonl", "samples.jsonl"):
            kept = [r for r in runs.read_jsonl(run_dir / name) if r.get("step", 0) <= start_step]
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
            runs.atomic_write(run_dir / name, lambda p, text=text: p.write_text(text, encoding="utf-8"))
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), "resumed_from": start_step})
        task = LanguageModel(job)
        return trainer.Trainer(run_dir, task, job.train, start_step, listener).run(
            lambda: model, task.dataset
        )
