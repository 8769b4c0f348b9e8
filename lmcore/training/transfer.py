"""A trained run's body for a new task: the parent run, and what is frozen, dropped or added.

Fine-tuning (:mod:`lmcore.training.finetune`) and classification
(:mod:`lmcore.training.classify`) both start from a :class:`Parent` (a language-model run
with a checkpoint) and a :class:`Surgery`: the bottom blocks frozen with the embeddings, the
top blocks removed, new blocks added. :func:`plan` lists what happens to each layer with no
TensorFlow, so a page can draw it; :func:`build_from_parent` builds the child network.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from lmcore import LMError, runs
from lmcore.nn.config import TrainConfig, layer_names, validate
from lmcore.runs import RunRecord
from lmcore.text import tokenizers


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
    return Parent(run_dir, record, tokenizers.load(run_dir / runs.TOKENIZER), ckpt)


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
    from lmcore.nn import models  # Keras, to build: the Fine-tune page draws the plan without it

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
