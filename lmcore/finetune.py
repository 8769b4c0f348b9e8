"""Fine-tuning: continue a pre-trained run on other text, with layers frozen, dropped or added.

The tutorial's recipe for adapting a pre-trained model: train it further on the new data
with a lower learning rate, optionally freezing the bottom blocks (they hold the most
general features), removing the top blocks (the most specific to the old data) or adding
new ones. A fine-tuned run is an ordinary run (the same training loop, :mod:`lmcore.trainer`;
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

from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lmcore import LMError, corpus, data, runs
from lmcore import tokenizers as tok_mod
from lmcore import train as train_mod
from lmcore.config import DataConfig, TrainConfig, check_train_config, layer_names, validate
from lmcore.runs import RunRecord

LR_FACTOR = 0.1  # default fine-tuning learning rate: the parent's peak rate times this
DEFAULT_STEPS = 500


@dataclass(frozen=True)
class Surgery:
    """What changes between the parent's network and the child's."""

    freeze: int = 0  # bottom blocks kept frozen; the embeddings are frozen too when > 0
    drop_top: int = 0  # top blocks of the parent removed
    add_layers: int = 0  # new blocks (fresh weights) stacked on the kept ones


# ---------------------------------------------------------------------------- the parent


@dataclass
class Parent:
    """A pre-trained language-model run: its folder, record, tokenizer and checkpoint."""

    run_dir: Path
    record: RunRecord
    tokenizer: object
    checkpoint: Path

    @property
    def model_config(self):
        return self.record.model

    def train_config(self) -> TrainConfig:
        """The parent's training settings."""
        return replace(self.record.train)


def load_parent(run: str, root: Path) -> Parent:
    """The run ``run`` (an id in ``root`` or a folder), checked to be a language model with a checkpoint."""
    run_dir = runs.resolve(run, root)
    record = runs.read_record(run_dir)
    if record is not None and record.task == "classify":
        raise LMError(f"run {run_dir.name} is a classifier; start from a language-model run")
    if record is None or record.model is None:
        raise LMError(f"run {run_dir.name} has no model settings in its record")
    ckpt = runs.existing_checkpoint(run_dir, "best")
    if ckpt is None:
        raise LMError(f"run {run_dir.name} has no checkpoint yet (one is saved at each validation)")
    return Parent(run_dir, record, tok_mod.load(run_dir / "tokenizer.json"), ckpt)


# ---------------------------------------------------------------------------- the plan


def resolve_freeze(freeze: int | str, kept: int) -> int:
    """``freeze`` as a number of blocks: ``"all"`` means every kept block."""
    if freeze == "all":
        return kept
    try:
        n = int(freeze)
    except (TypeError, ValueError):
        raise LMError(f"--freeze takes a number of blocks or 'all', not {freeze!r}") from None
    if n < 0:
        raise LMError(f"--freeze cannot be negative, not {n}")
    return n


def surgery(model_config, freeze: int | str = 0, drop_top: int = 0, add_layers: int = 0) -> Surgery:
    """The checked Surgery for command-line style options (``freeze`` may be ``"all"``)."""
    s = Surgery(resolve_freeze(freeze, model_config.n_layer - drop_top), drop_top, add_layers)
    check_surgery(model_config, s)
    return s


def check_surgery(model_config, s: Surgery) -> None:
    n = model_config.n_layer
    if s.drop_top < 0 or s.add_layers < 0:
        raise LMError("--drop-top and --add-layers cannot be negative")
    if s.drop_top >= n:
        raise LMError(f"--drop-top {s.drop_top} would leave no block: the parent has {n}")
    kept = n - s.drop_top
    if s.freeze > kept:
        raise LMError(f"--freeze {s.freeze} is more than the {kept} block(s) kept from the parent")


def plan(model_config, s: Surgery) -> list[dict]:
    """One row per layer of parent and child, bottom to top: where it comes from and whether it trains.

    ``state`` is ``frozen`` or ``trainable`` (copied from the parent), ``new`` (fresh
    weights, trainable) or ``dropped`` (in the parent only).
    """
    check_surgery(model_config, s)
    embeds, blocks, tops = layer_names(model_config)
    kept = model_config.n_layer - s.drop_top
    gpt = model_config.family == "gpt"
    tied = not gpt or model_config.tied_head
    what = {
        "wte": "token embedding" + (" (also the output head: tied)" if tied else ""),
        "wpe": "position embedding",
    }
    block = "transformer block" if gpt else "recurrent layer"
    rows = [
        dict(layer=n, what=what.get(n, "token embedding"), state="frozen" if s.freeze else "trainable")
        for n in embeds
    ]
    for i, name in enumerate(blocks):
        state = "dropped" if i >= kept else ("frozen" if i < s.freeze else "trainable")
        rows.append(dict(layer=name, what=block, state=state))
    new = layer_names(child_model_config(model_config, s))[1][kept:]
    rows += [dict(layer=name, what=block, state="new") for name in new]
    top = {"ln_f": "final LayerNorm", "head": "output layer"}
    return rows + [dict(layer=name, what=top[name], state="trainable") for name in tops]


def child_model_config(model_config, s: Surgery):
    """The child's model config: the parent's with ``n_layer`` changed by the surgery."""
    check_surgery(model_config, s)
    config = replace(model_config, n_layer=model_config.n_layer - s.drop_top + s.add_layers)
    validate(config)
    return config


# ---------------------------------------------------------------------------- building


def build_from_parent(parent: Parent, s: Surgery, scratch: bool = False):
    """The child language model (uncompiled): parent weights where kept, fresh ones where new.

    New transformer blocks start as the identity (their output projections at zero), so the
    model's predictions at step 0 are the truncated parent's. ``scratch=True`` builds the
    same network untrained, with the same layers frozen (the comparison's from-scratch
    baseline).
    """
    from lmcore import models

    model = models.build_model(child_model_config(parent.model_config, s))
    kept = parent.model_config.n_layer - s.drop_top
    if not scratch:
        models.copy_weights(models.load_model(parent.checkpoint, compile=False), model, kept)
        if parent.model_config.family == "gpt":
            for block in models.parts(model).blocks[kept:]:
                block.start_as_identity()
    models.freeze_bottom(model, s.freeze)
    return model


def count_params(model) -> dict:
    """Trainable and frozen parameter counts of a built model."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable_params": trainable, "frozen_params": frozen}


# ---------------------------------------------------------------------------- the job


def oov_report(tokenizer, text: str) -> dict:
    """What the parent's tokenizer cannot represent in ``text``: counts and the commonest."""
    unknown: Counter = tokenizer.unknown(text)
    handling = {"char": "dropped", "word": "mapped to <unk>"}.get(tokenizer.kind, "none (byte-level)")
    return {
        "unknown": int(sum(unknown.values())),
        "distinct": len(unknown),
        "examples": [[k, int(v)] for k, v in unknown.most_common(10)],
        "handling": handling,
    }


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
) -> tuple[train_mod.Job, dict]:
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
    train_ids, val_ids = data.split(ids)
    data.check_length(train_ids, val_ids, child_cfg.block_size)
    job = train_mod.Job(
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


def start(
    parent: Parent,
    job: train_mod.Job,
    record: dict,
    root: Path,
    name: str | None = None,
    listener=None,
    run_id: str | None = None,
    scratch: bool = False,
    comparison: dict | None = None,
) -> dict:
    """Create the child run and train it with the ordinary training loop."""
    s = Surgery(record["freeze"], record["drop_top"], record["add_layers"])
    if scratch:
        record = {**record, "scratch": True}
    result = train_mod.start(
        job,
        root,
        name or f"ft-{job.model_name}",
        listener=listener,
        parent=None if scratch else parent.run_dir.name,
        run_id=run_id,
        build=lambda: build_from_parent(parent, s, scratch=scratch),
        lineage={"finetune": record, "comparison": comparison},
    )
    return {**result, "parent": None if scratch else parent.run_dir.name, "oov": record["oov"]}
