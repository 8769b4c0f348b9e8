"""Configurations: one dataclass per model family with its presets, one for training with
the per-model recipes, one for the data. TensorFlow-free, so pages can list and check them.

A run saves these in its record (:class:`lmcore.runs.RunRecord`), and
:func:`lmcore.nn.models.build_model` rebuilds the model from the model config alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from lmcore import LMError


@dataclass
class RNNConfig:
    """The tutorial's network: Embedding -> n_layer recurrent layers -> Dense over the vocabulary."""

    family: str = "lstm"  # "lstm" or "gru"
    vocab_size: int = 65  # tokens in the vocabulary
    block_size: int = 100  # tokens per training window
    n_embd: int = 64  # embedding width
    n_hidden: int = 128  # units per recurrent layer
    n_layer: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # dropout on each recurrent layer's output


@dataclass
class GPTConfig:
    """A decoder-only transformer: nanoGPT's by default; the switches below are the modern
    changes of the ``modern-*`` presets, each off for an ablation."""

    family: str = "gpt"
    vocab_size: int = 65  # tokens in the vocabulary
    block_size: int = 64  # context length in tokens
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual stream width; must divide by n_head
    dropout: float = 0.0  # on attention weights and residual branches
    rotary: bool = False  # rotary positions on queries and keys instead of learned positions
    qk_norm: bool = False  # queries and keys RMS-normalized per head before attention
    mlp: str = "gelu"  # the MLP's activation: "gelu", or "relu2" (ReLU squared)
    zero_init: bool = False  # output projections (and an untied head) start at zero
    tied_head: bool = True  # the output head is the token embedding (weight tying)
    softcap: float = 0.0  # logits squashed to cap * tanh(logits / cap); 0 = off


PRESETS: dict[str, tuple[type, dict]] = {
    "seed-lstm": (RNNConfig, dict(family="lstm")),
    "gru": (RNNConfig, dict(family="gru")),
    "tiny": (GPTConfig, dict(n_layer=2, n_head=2, n_embd=32, block_size=32)),
    "nano": (GPTConfig, dict(n_layer=4, n_head=4, n_embd=128, block_size=64)),
    "small": (GPTConfig, dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2)),
}
# The modern changes that helped here (BENCHMARKS.md, the ablation): rotary positions, QK-norm,
# zero-initialised projections. A ReLU² MLP, an untied head and a logit soft-cap did not help
# nano's shape on two cores; they stay switches for the ablation.
MODERN = dict(rotary=True, qk_norm=True, zero_init=True)
TRIED = dict(mlp="relu2", tied_head=False, softcap=15.0)  # tried, and left out of MODERN
PRESETS["modern-nano"] = (GPTConfig, {**PRESETS["nano"][1], **MODERN})
PRESETS["modern-small"] = (GPTConfig, {**PRESETS["small"][1], **MODERN})
MODEL_NAMES = tuple(PRESETS)
DEFAULT_MODEL = "modern-nano"  # the Train page's first choice, and what the server warms up


def form_steps(model: str) -> int:
    """The step count the Train page offers first for ``model`` (its recipe's)."""
    return RECIPES.get(model, {}).get("steps", 1000)


def make_config(name: str, **overrides) -> RNNConfig | GPTConfig:
    """The preset ``name`` with ``overrides`` (None values ignored) applied."""
    if name not in PRESETS:
        raise LMError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    cls, preset = PRESETS[name]
    known = {f.name for f in fields(cls)}
    values = {**preset, **{k: v for k, v in overrides.items() if v is not None and k in known}}
    config = cls(**values)
    validate(config)
    return config


def config_from_dict(data: dict) -> RNNConfig | GPTConfig:
    cls = GPTConfig if data.get("family") == "gpt" else RNNConfig
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def validate(config) -> None:
    for name in ("vocab_size", "block_size", "n_layer", "n_embd"):
        if getattr(config, name) < 1:
            raise LMError(f"{name} must be at least 1, not {getattr(config, name)}")
    if not 0 <= config.dropout < 1:
        raise LMError(f"dropout must be in [0, 1), not {config.dropout}")
    if isinstance(config, GPTConfig):
        if config.n_head < 1 or config.n_embd % config.n_head:
            raise LMError(f"n_embd ({config.n_embd}) must be a multiple of n_head ({config.n_head})")
        if config.rotary and (config.n_embd // config.n_head) % 2:
            raise LMError("rotary positions need an even head size (n_embd / n_head)")
        if config.mlp not in ("gelu", "relu2"):
            raise LMError(f"unknown MLP activation {config.mlp!r}; choose gelu or relu2")
        if config.softcap < 0:
            raise LMError(f"the logit soft cap must be 0 (off) or positive, not {config.softcap}")
    elif config.family not in ("lstm", "gru"):
        raise LMError(f"unknown recurrent family {config.family!r}")


def layer_names(model_config) -> tuple[list[str], list[str], list[str]]:
    """(embedding layers, blocks bottom to top, top layers) of the model a config builds: the
    names :mod:`lmcore.nn.models` gives them, for plans and tables that must not load Keras."""
    c = model_config
    if c.family == "gpt":
        embeddings = ["wte"] + ([] if c.rotary else ["wpe"])
        return (
            embeddings,
            [f"block_{i}" for i in range(c.n_layer)],
            ["ln_f"] + ([] if c.tied_head else ["head"]),
        )
    return ["embedding"], [f"{c.family}_{i}" for i in range(c.n_layer)], ["head"]


# ---------------------------------------------------------------------------- training

OPTIMIZERS = ("adam", "adamw", "sgd", "muon")
SCHEDULES = ("constant", "exponential", "cosine")


@dataclass
class TrainConfig:
    """How to train; saved with the run. Learning rates are per optimizer step."""

    steps: int = 2000  # optimizer steps in all
    batch_size: int = 32  # windows per step
    optimizer: str = "adam"  # adam | adamw | sgd | muon (AdamW for embeddings, norms, head)
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
    eval_every: int = 50  # steps between validations and checkpoints (15 in a 700-step run: ~1% of its time)
    eval_batches: int = 20  # validation batches (a fixed subset of the split)
    sample_length: int = 200  # tokens generated at each validation (0 = none)
    seed: int = 1337  # weights, data order and samples
    jit_compile: bool | None = None  # XLA; None = on for the GPT, off for the RNNs
    schedule_steps: int | None = None  # steps the LR schedule spans (None = steps; kept when extended)
    augment: dict = field(default_factory=dict)  # data.Augment fields, training windows only


@dataclass
class DataConfig:
    """Where the tokens come from."""

    source: str = "builtin:python-docs"  # corpus source string
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
    # Muon's orthogonalized steps take a larger rate; a schedule fitted to a short run.
    "modern-nano": dict(
        batch_size=32, lr=8e-3, schedule="cosine", warmup_steps=50, min_lr=4e-4, optimizer="muon", steps=700
    ),
    "modern-small": dict(
        batch_size=32, lr=4e-3, schedule="cosine", warmup_steps=100, min_lr=2e-4, optimizer="muon"
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


def train_config_from_dict(data: dict) -> TrainConfig:
    """A saved TrainConfig (fields this version does not know are ignored)."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in data.items() if k in known})


AUGMENT_FIELDS = ("delete", "substitute", "swap")  # data.Augment's probabilities


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
    if set(c.augment) - set(AUGMENT_FIELDS):
        problems.append(f"unknown augmentation settings {c.augment}")
    elif not all(0 <= c.augment[k] < 1 for k in c.augment):
        problems.append("augmentation probabilities must be in [0, 1)")
    if not 0 <= c.seed < 2**32:
        problems.append(f"seed must be between 0 and 2**32 - 1, not {c.seed}")
    if problems:
        raise LMError("; ".join(problems))
