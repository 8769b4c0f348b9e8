"""Fine-tuning: continue a pre-trained run on other text, with layers frozen, dropped or added.

The tutorial's recipe for adapting a pre-trained model: train it further on the new data
with a lower learning rate, optionally freezing the bottom blocks (they hold the most
general features), removing the top blocks (the most specific to the old data) or adding
new ones. A fine-tuned run is an ordinary run (the same training loop, :mod:`lmcore.training.loop`;
the same run folder; it resumes and generates like any other) whose record names its
``parent`` and keeps the surgery in ``finetune``.

The new text is encoded with the parent's tokenizer, unchanged, so the embedding rows keep
their meaning. What that tokenizer cannot represent is counted and reported: the character
tokenizer drops unknown characters (as generation does with a prompt), the word tokenizer
maps unknown words to ``<unk>``, and byte-level BPE has no unknowns.

``plan`` (which layers are kept, frozen, dropped or new) needs no TensorFlow, so the
dashboard can draw it; building the models imports Keras lazily.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from lmcore.nn.config import DataConfig, TrainConfig, check_train_config
from lmcore.text import corpus, windows
from lmcore.training import lmdata
from lmcore.training.transfer import Parent, Surgery, child_model_config, oov_report, plan

LR_FACTOR = 0.1  # default fine-tuning learning rate: the parent's peak rate times this
DEFAULT_STEPS = 500


# ---------------------------------------------------------------------------- the job


def train_config_for(base: TrainConfig, **overrides) -> TrainConfig:
    """The parent's training settings ``base`` for a fine-tune: LR x LR_FACTOR, DEFAULT_STEPS steps.

    ``overrides`` (None values ignored) are TrainConfig fields. The schedule spans the new
    run only, with a warm-up of at most a tenth of it.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    lr = given.get("lr", base.lr * LR_FACTOR)
    steps = given.get("steps", DEFAULT_STEPS)
    defaults = dict(
        min_lr=min(base.min_lr * LR_FACTOR, lr),
        warmup_steps=min(base.warmup_steps, steps // 10),
        schedule_steps=None,
        augment={},
    )
    config = replace(base, **{**defaults, **given, "lr": lr, "steps": steps})
    check_train_config(config)
    return config


def prepare(
    parent: Parent,
    source: str,
    s: Surgery,
    train_config,
    text_column: str | None = None,
    clean: dict | None = None,
    progress=None,
) -> tuple[lmdata.Job, dict]:
    """Load the new corpus, encode it with the parent's tokenizer and check everything.

    Returns the training job and what the run records under ``finetune``.
    """
    child_cfg = child_model_config(parent.model_config, s)
    data_config = DataConfig(
        source=source,
        tokenizer=parent.tokenizer.kind,
        vocab_size=parent.record.data.vocab_size,
        text_column=text_column,
        clean=clean or {},
    )
    loaded = corpus.load(
        source, text_column=text_column, options=corpus.CleanOptions(**(clean or {})), progress=progress
    )
    ids = parent.tokenizer.encode(loaded.text)
    train_ids, val_ids = windows.split(ids)
    windows.check_length(train_ids, val_ids, child_cfg.block_size)
    job = lmdata.Job(
        parent.record.model_name,
        child_cfg,
        train_config,
        data_config,
        parent.tokenizer,
        loaded.text,
        loaded.sha256,
        train_ids,
        val_ids,
    )
    record = {
        **asdict(s),
        "parent": parent.run_dir.name,
        "parent_checkpoint": parent.checkpoint.stem,
        "parent_corpus": parent.record.data.source,
        "parent_n_layer": parent.model_config.n_layer,
        "oov": oov_report(parent.tokenizer, loaded.text),
        "plan": plan(parent.model_config, s),
    }
    return job, record
