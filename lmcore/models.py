"""Models: the tutorial's LSTM, a GRU twin, and a small decoder-only GPT, in Keras 3.

Every model maps token ids (B, T) to next-token logits (B, T, V) and is built from its
config alone by :func:`build_model`, so a run's saved ``config.json`` is enough to rebuild
it. Custom layers are registered serializable, so ``.keras`` checkpoints reload with
``safe_mode=True``.

The GPT follows nanoGPT's shape: learned positions, pre-LayerNorm blocks of causal
self-attention and a GELU MLP, no biases, and the output head tied to the token embedding.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from lmcore import LMError
from lmcore.config import (  # noqa: F401  (re-exported: models.make_config etc.)
    MODEL_NAMES,
    PRESETS,
    GPTConfig,
    RNNConfig,
    config_from_dict,
    make_config,
    validate,
)

# ---------------------------------------------------------------------------- GPT layers


def _keep_frozen(layer: layers.Layer) -> None:
    """Freeze the weights a layer restored with ``trainable=False`` has just built.

    Keras applies a loaded layer's ``trainable`` before its sublayers exist, so without this
    a frozen block of a fine-tuned checkpoint would train again when the run resumes.
    """
    if not layer.trainable:
        layer.trainable = True  # setting the value a layer already has does nothing
        layer.trainable = False  # so this reaches every sublayer and weight


@keras.saving.register_keras_serializable(package="lmcore")
class CausalSelfAttention(layers.Layer):
    """Multi-head self-attention in which position t sees positions <= t only."""

    def __init__(self, n_embd, n_head, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.qkv = layers.Dense(3 * n_embd, use_bias=False, name="qkv")
        self.proj = layers.Dense(n_embd, use_bias=False, name="proj")
        self.attn_drop = layers.Dropout(dropout)
        self.resid_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(input_shape)
        _keep_frozen(self)

    def attention(self, x, training=False):
        """Returns (output (B, T, C), attention weights (B, H, T, T))."""
        B, T = ops.shape(x)[0], ops.shape(x)[1]
        H, D = self.n_head, self.n_embd // self.n_head
        qkv = ops.reshape(self.qkv(x), (B, T, 3, H, D))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(D)  # (B, H, T, T)
        causal = ops.tril(ops.ones((T, T), dtype="bool"))
        att = ops.where(causal, ops.cast(att, "float32"), -1e30)
        att = ops.cast(ops.softmax(att, axis=-1), x.dtype)
        y = ops.matmul(self.attn_drop(att, training=training), v)  # (B, H, T, D)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (B, T, self.n_embd))
        return self.resid_drop(self.proj(y), training=training), att

    def call(self, x, training=False):
        return self.attention(x, training=training)[0]

    def get_config(self):
        return {**super().get_config(), "n_embd": self.n_embd, "n_head": self.n_head, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="lmcore")
class Block(layers.Layer):
    """x + attn(ln1(x)), then x + mlp(ln2(x)): the pre-LayerNorm transformer block."""

    def __init__(self, n_embd, n_head, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, center=False, name="ln1")
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, name="attn")
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, center=False, name="ln2")
        self.fc = layers.Dense(4 * n_embd, use_bias=False, name="fc")
        self.fc_proj = layers.Dense(n_embd, use_bias=False, name="fc_proj")
        self.mlp_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        for sub in (self.ln1, self.attn, self.ln2, self.fc):
            sub.build(input_shape)
        self.fc_proj.build((*input_shape[:-1], 4 * self.n_embd))
        _keep_frozen(self)

    def mlp(self, x, training=False):
        h = ops.gelu(self.fc(x), approximate=True)  # (B, T, 4C)
        return self.mlp_drop(self.fc_proj(h), training=training)

    def call(self, x, training=False):
        x = x + self.attn(self.ln1(x), training=training)
        return x + self.mlp(self.ln2(x), training=training)

    def get_config(self):
        return {**super().get_config(), "n_embd": self.n_embd, "n_head": self.n_head, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="lmcore")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position 0..T-1 to the token embeddings."""

    def __init__(self, block_size, n_embd, **kwargs):
        super().__init__(**kwargs)
        self.block_size, self.n_embd = block_size, n_embd

    def build(self, input_shape):
        self.pos = self.add_weight(
            shape=(self.block_size, self.n_embd),
            name="pos",
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, x):
        T = ops.shape(x)[1]
        return x + ops.cast(self.pos[None, :T, :], x.dtype)  # (B, T, C)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size, "n_embd": self.n_embd}


@keras.saving.register_keras_serializable(package="lmcore")
class TiedEmbedding(layers.Embedding):
    """A token embedding that, called with ``reverse=True``, is also the output head.

    Weight tying: the logit of token v is the dot product of the final hidden state with
    v's embedding, which saves V x C parameters and helps small models.
    """

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)  # (B, T) -> (B, T, C)
        w = ops.cast(self.embeddings, inputs.dtype)  # (V, C)
        return ops.cast(ops.matmul(inputs, ops.transpose(w)), "float32")  # (B, T, V)

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse=False):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        dtype = "float32" if reverse else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)


# ---------------------------------------------------------------------------- factory


def _build_gpt(c: GPTConfig) -> keras.Model:
    init = keras.initializers.RandomNormal(stddev=0.02)
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")  # (B, T)
    wte = TiedEmbedding(c.vocab_size, c.n_embd, embeddings_initializer=init, name="wte")
    x = PositionEmbedding(c.block_size, c.n_embd, name="wpe")(wte(ids))  # (B, T, C)
    x = layers.Dropout(c.dropout)(x)
    for i in range(c.n_layer):
        x = Block(c.n_embd, c.n_head, c.dropout, name=f"block_{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-5, center=False, name="ln_f")(x)
    logits = wte(x, reverse=True)  # (B, T, V)
    return keras.Model(ids, logits, name="gpt")


def _build_rnn(c: RNNConfig) -> keras.Model:
    cell = layers.LSTM if c.family == "lstm" else layers.GRU
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")  # (B, T)
    x = layers.Embedding(c.vocab_size, c.n_embd, name="embedding")(ids)  # (B, T, E)
    for i in range(c.n_layer):
        x = cell(c.n_hidden, return_sequences=True, name=f"{c.family}_{i}")(x)  # (B, T, H)
        if c.dropout:
            x = layers.Dropout(c.dropout)(x)
    logits = layers.Dense(c.vocab_size, dtype="float32", name="head")(x)  # (B, T, V)
    return keras.Model(ids, logits, name=c.family)


def build_model(config: RNNConfig | GPTConfig) -> keras.Model:
    """Build an untrained model from its config."""
    validate(config)
    if isinstance(config, GPTConfig):
        return _build_gpt(config)
    return _build_rnn(config)


def load_model(path, compile: bool = True) -> keras.Model:
    """Load a checkpoint this project wrote, with Keras' safe mode on.

    A file that safe mode refuses (code inside it) or that is not a checkpoint at all ends
    in an :class:`LMError` naming the file, not in Keras' exception.
    """
    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except (ValueError, TypeError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LMError(f"cannot load the checkpoint {path}: {first}") from err


def embedding_matrix(model: keras.Model) -> np.ndarray:
    """The token embedding matrix (V, C) of any model this module builds."""
    for layer in model.layers:
        if isinstance(layer, layers.Embedding):
            return keras.ops.convert_to_numpy(layer.embeddings)
    raise ValueError(f"model {model.name} has no embedding layer")
