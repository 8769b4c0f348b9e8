"""Model configurations: one dataclass per model family, and the named presets.

Kept apart from ``models`` so that listing and checking models never loads TensorFlow.
A run saves its config, and :func:`lmcore.models.build_model` rebuilds the model from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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
    """A decoder-only transformer."""

    family: str = "gpt"
    vocab_size: int = 65  # tokens in the vocabulary
    block_size: int = 64  # context length in tokens (learned positions)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual stream width; must divide by n_head
    dropout: float = 0.0  # on attention weights and residual branches


PRESETS: dict[str, tuple[type, dict]] = {
    "seed-lstm": (RNNConfig, dict(family="lstm")),
    "gru": (RNNConfig, dict(family="gru")),
    "tiny": (GPTConfig, dict(n_layer=2, n_head=2, n_embd=32, block_size=32)),
    "nano": (GPTConfig, dict(n_layer=4, n_head=4, n_embd=128, block_size=64)),
    "small": (GPTConfig, dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2)),
}
MODEL_NAMES = tuple(PRESETS)


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
    elif config.family not in ("lstm", "gru"):
        raise LMError(f"unknown recurrent family {config.family!r}")
