"""A language-model job, prepared and checked before anything trains (no TensorFlow).

:func:`prepare` loads and tokenizes the corpus and checks every setting (window length,
model, memory) before a run folder exists, so bad input leaves nothing behind; its
:class:`Job` is what :func:`lmcore.training.lm.start` trains. :func:`preflight` is the same
checks for a form, before a job is even submitted, and :func:`job_from_run` rebuilds the
job of an existing run (to resume it). Pages import this module; it loads no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lmcore import LMError, device, runs
from lmcore.nn.config import DataConfig, TrainConfig, check_train_config
from lmcore.nn.config import make_config as make_model_config
from lmcore.runs import DataRecord, RunRecord
from lmcore.text import corpus, tokenizers, windows

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
    tokenizer = tokenizers.train(data_config.tokenizer, loaded.text, data_config.vocab_size)
    ids = tokenizer.encode(loaded.text)
    config = make_model_config(
        model_name, vocab_size=tokenizer.vocab_size, block_size=block_size, **(model_overrides or {})
    )
    train_ids, val_ids = windows.split(ids)
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
        windows.check_length(range(train_tokens), range(val_tokens), model_config.block_size)
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
        vocab_size = len(set(text)) if tokenizer == "char" else tokenizers.DEFAULT_VOCAB[tokenizer]
    config = make_model_config(model_name, vocab_size=max(vocab_size, 1), block_size=block_size)
    train_part, val_part = windows.split(range(len(text)))
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
    saved = run_dir / runs.CORPUS
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
    tokenizer = tokenizers.load(run_dir / runs.TOKENIZER)
    train_ids, val_ids = windows.split(tokenizer.encode(text))
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
