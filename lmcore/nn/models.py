"""Models: the tutorial's LSTM, a GRU twin, and a small decoder-only GPT, in Keras 3.

Every model maps token ids (B, T) to next-token logits (B, T, V) and is built from its
config alone by :func:`build_model`, so a run's record is enough to rebuild it. Custom
layers are registered serializable, so ``.keras`` checkpoints reload with ``safe_mode=True``.

The GPT follows nanoGPT's shape: learned positions, pre-LayerNorm blocks of causal
self-attention and a GELU MLP, no biases, and the output head tied to the token embedding.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from lmcore import LMError
from lmcore.nn import schedule
from lmcore.nn.config import (  # noqa: F401  (re-exported: models.make_config etc.)
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


CLASSIC = {"rotary": False, "qk_norm": False, "mlp": "gelu", "zero_init": False}  # nanoGPT's block


def _rms(x, eps=1e-6):
    """x scaled to unit root-mean-square over its last axis (no learned gain)."""
    return x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + eps)


def rotate(x, positions):
    """Rotary position embedding of ``x`` (B, H, n, D) at ``positions`` (n,): each pair of
    channels (i, i + D/2) turned by an angle that grows with the position, at a frequency of
    its own, so that a query-key product depends on their distance only."""
    D = x.shape[-1]
    inv_freq = 1.0 / (10_000 ** (ops.arange(0, D // 2, dtype="float32") / (D // 2)))  # (D/2,)
    angles = ops.cast(positions, "float32")[:, None] * inv_freq[None, :]  # (n, D/2)
    cos, sin = ops.cast(ops.cos(angles), x.dtype), ops.cast(ops.sin(angles), x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return ops.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


@keras.saving.register_keras_serializable(package="lmcore")
class CausalSelfAttention(layers.Layer):
    """Multi-head self-attention in which position t sees positions <= t only.

    ``call`` attends over its input window; ``call_with_cache`` attends from new positions
    to a key/value cache of the whole block, writing theirs into it: generation's form of
    the same computation (both go through :meth:`project` and :meth:`attend`). ``variant``
    switches on the modern changes: rotary positions on queries and keys, RMS-normalized
    queries and keys (QK-norm), a zero-initialised output projection.
    """

    def __init__(self, n_embd, n_head, dropout=0.0, variant=None, **kwargs):
        super().__init__(**kwargs)
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.variant = {**CLASSIC, **(variant or {})}
        out_init = "zeros" if self.variant["zero_init"] else "glorot_uniform"
        self.qkv = layers.Dense(3 * n_embd, use_bias=False, name="qkv")
        self.proj = layers.Dense(n_embd, use_bias=False, kernel_initializer=out_init, name="proj")
        self.attn_drop = layers.Dropout(dropout)
        self.resid_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(input_shape)
        _keep_frozen(self)

    def project(self, x, positions=None):
        """Queries, keys and values of ``x`` (B, n, C) at ``positions`` (n,; default 0..n-1),
        each (B, H, n, D), with the variant's QK-norm and rotary positions applied."""
        B, n = ops.shape(x)[0], ops.shape(x)[1]
        H, D = self.n_head, self.n_embd // self.n_head
        qkv = ops.transpose(ops.reshape(self.qkv(x), (B, n, 3, H, D)), (2, 0, 3, 1, 4))  # (3, B, H, n, D)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.variant["qk_norm"]:
            q, k = _rms(q), _rms(k)
        if self.variant["rotary"]:
            positions = ops.arange(n) if positions is None else positions
            q, k = rotate(q, positions), rotate(k, positions)
        return q, k, v

    def attend(self, q, k, v, visible, training=False):
        """Each query (B, H, n, D) over the keys and values (B, H, T, D) it may see, ``visible``
        (n, T) bool; returns (output (B, n, C), attention weights (B, H, n, T))."""
        B, n = ops.shape(q)[0], ops.shape(q)[2]
        att = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(self.n_embd // self.n_head)
        att = ops.where(visible, ops.cast(att, "float32"), -1e30)
        att = ops.cast(ops.softmax(att, axis=-1), q.dtype)
        y = ops.matmul(self.attn_drop(att, training=training), v)  # (B, H, n, D)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (B, n, self.n_embd))
        return self.resid_drop(self.proj(y), training=training), att

    def attention(self, x, training=False):
        """Returns (output (B, T, C), attention weights (B, H, T, T)) over the window ``x``."""
        q, k, v = self.project(x)
        T = ops.shape(x)[1]
        return self.attend(q, k, v, ops.tril(ops.ones((T, T), dtype="bool")), training)

    def call(self, x, training=False):
        return self.attention(x, training=training)[0]

    def call_with_cache(self, x, cache, index):
        """``x`` (B, n, C) at positions index..index+n-1, ``cache`` (2, B, H, T, D) of keys and
        values; returns (output (B, n, C), the cache with the new positions written)."""
        T, n = ops.shape(cache)[3], ops.shape(x)[1]
        rows = index + ops.arange(n)  # the positions written, (n,)
        q, k, v = self.project(x, rows)
        write = ops.cast(rows[:, None] == ops.arange(T)[None, :], cache.dtype)  # (n, T)
        keep = 1 - ops.sum(write, axis=0)[:, None]  # (T, 1): 0 where a position is rewritten
        k_all = cache[0] * keep + ops.einsum("nt,bhnd->bhtd", write, ops.cast(k, cache.dtype))
        v_all = cache[1] * keep + ops.einsum("nt,bhnd->bhtd", write, ops.cast(v, cache.dtype))
        visible = ops.arange(T)[None, :] <= rows[:, None]  # (n, T): itself and what came before
        y, _ = self.attend(q, ops.cast(k_all, q.dtype), ops.cast(v_all, q.dtype), visible)
        return y, ops.stack([k_all, v_all])

    def get_config(self):
        base = {"n_embd": self.n_embd, "n_head": self.n_head, "dropout": self.dropout}
        return {**super().get_config(), **base, "variant": self.variant}


@keras.saving.register_keras_serializable(package="lmcore")
class Block(layers.Layer):
    """x + attn(ln1(x)), then x + mlp(ln2(x)): the pre-LayerNorm transformer block.

    The MLP is GELU, or ReLU squared in the modern ``variant``, whose output projections start
    at zero (a block then begins as the identity)."""

    def __init__(self, n_embd, n_head, dropout=0.0, variant=None, **kwargs):
        super().__init__(**kwargs)
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.variant = {**CLASSIC, **(variant or {})}
        out_init = "zeros" if self.variant["zero_init"] else "glorot_uniform"
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, center=False, name="ln1")
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, self.variant, name="attn")
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, center=False, name="ln2")
        self.fc = layers.Dense(4 * n_embd, use_bias=False, name="fc")
        self.fc_proj = layers.Dense(n_embd, use_bias=False, kernel_initializer=out_init, name="fc_proj")
        self.mlp_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        for sub in (self.ln1, self.attn, self.ln2, self.fc):
            sub.build(input_shape)
        self.fc_proj.build((*input_shape[:-1], 4 * self.n_embd))
        _keep_frozen(self)

    def mlp(self, x, training=False):
        h = self.fc(x)  # (B, T, 4C)
        h = ops.square(ops.relu(h)) if self.variant["mlp"] == "relu2" else ops.gelu(h, approximate=True)
        return self.mlp_drop(self.fc_proj(h), training=training)

    def call(self, x, training=False):
        x = x + self.attn(self.ln1(x), training=training)
        return x + self.mlp(self.ln2(x), training=training)

    def call_with_cache(self, x, cache, index):
        """The block at positions index.. with its attention's cache: (output, new cache)."""
        y, cache = self.attn.call_with_cache(self.ln1(x), cache, index)
        x = x + y
        return x + self.mlp(self.ln2(x)), cache

    def start_as_identity(self) -> None:
        """Zero the residual branches' output projections: the block then adds nothing (a
        new block stacked on a trained model leaves its predictions as they were)."""
        for dense in (self.attn.proj, self.fc_proj):
            dense.kernel.assign(ops.zeros_like(dense.kernel))

    def get_config(self):
        base = {"n_embd": self.n_embd, "n_head": self.n_head, "dropout": self.dropout}
        return {**super().get_config(), **base, "variant": self.variant}


@keras.saving.register_keras_serializable(package="lmcore")
class SoftCap(layers.Layer):
    """``cap * tanh(logits / cap)``: logits kept within (-cap, cap), smoothly (float32)."""

    def __init__(self, cap, **kwargs):
        super().__init__(**kwargs)
        self.cap = cap

    def call(self, logits):
        return self.cap * ops.tanh(ops.cast(logits, "float32") / self.cap)

    def get_config(self):
        return {**super().get_config(), "cap": self.cap}


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

    def call(self, x, index=None):
        """``x`` (B, n, C) plus the vectors of positions 0..n-1, or index..index+n-1."""
        n = ops.shape(x)[1]
        if index is None:
            return x + ops.cast(self.pos[None, :n, :], x.dtype)  # (B, n, C)
        return x + ops.cast(ops.take(self.pos, index + ops.arange(n), axis=0)[None], x.dtype)

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
    variant = {"rotary": c.rotary, "qk_norm": c.qk_norm, "mlp": c.mlp, "zero_init": c.zero_init}
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")  # (B, T)
    wte = TiedEmbedding(c.vocab_size, c.n_embd, embeddings_initializer=init, name="wte")
    x = wte(ids)  # (B, T, C)
    if not c.rotary:  # rotary positions live in the attention instead
        x = PositionEmbedding(c.block_size, c.n_embd, name="wpe")(x)
    x = layers.Dropout(c.dropout)(x)
    for i in range(c.n_layer):
        x = Block(c.n_embd, c.n_head, c.dropout, variant if variant != CLASSIC else None, name=f"block_{i}")(
            x
        )
    x = layers.LayerNormalization(epsilon=1e-5, center=False, name="ln_f")(x)
    if c.tied_head:
        logits = wte(x, reverse=True)  # (B, T, V)
    else:
        head_init = "zeros" if c.zero_init else "glorot_uniform"
        logits = layers.Dense(
            c.vocab_size, use_bias=False, kernel_initializer=head_init, dtype="float32", name="head"
        )(x)
    if c.softcap:
        logits = SoftCap(c.softcap, name="softcap")(logits)
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
    schedule.keras_class()  # a checkpoint's optimizer may name the run's schedule
    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except (ValueError, TypeError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LMError(f"cannot load the checkpoint {path}: {first}") from err


# ---------------------------------------------------------------------------- the parts, and the cached call


class GPTParts:
    """A GPT's layers in order, and its cached, incremental call: generation's form of the
    model, through the same layers (and the same attention) as training's ``model(ids)``."""

    def __init__(self, model: keras.Model, block_size: int | None = None):
        named = {layer.name: layer for layer in model.layers}
        self.wte, self.ln_f = named["wte"], named["ln_f"]
        self.wpe, self.head, self.softcap = named.get("wpe"), named.get("head"), named.get("softcap")
        self.blocks = [layer for layer in model.layers if isinstance(layer, Block)]
        self.embeddings = [self.wte, *([self.wpe] if self.wpe else [])]
        self.top = [self.ln_f, *([self.head] if self.head else [])]
        # The cache's length: the learned positions', or the config's (rotary positions have none).
        self.block_size = self.wpe.block_size if self.wpe else block_size
        self.vocab_size = self.wte.input_dim
        self.n_head, self.head_dim = self.blocks[0].n_head, self.blocks[0].n_embd // self.blocks[0].n_head

    def logits(self, x):
        """The final norm, the head (tied or not) and the soft cap: logits (B, n, V)."""
        x = self.ln_f(x)
        logits = self.head(x) if self.head else self.wte(x, reverse=True)
        return self.softcap(logits) if self.softcap else logits

    def embed(self, ids, index=None):
        x = self.wte(ids)
        return self.wpe(x, index=index) if self.wpe else x

    def empty_cache(self, batch: int):
        """Keys and values of every layer for a whole block: (L, 2, B, H, T, D), zeros."""
        return ops.zeros((len(self.blocks), 2, batch, self.n_head, self.block_size, self.head_dim))

    def call_with_cache(self, ids, cache, index):
        """Logits (B, n, V) for ``ids`` (B, n) at positions index..index+n-1, attending to the
        cache's earlier positions, and the cache with these written."""
        x = self.embed(ids, index)  # (B, n, C)
        caches = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block.call_with_cache(x, cache[i], index)
            caches.append(layer_cache)
        return self.logits(x), ops.stack(caches)

    def attention_weights(self, ids) -> np.ndarray:
        """The attention weights of every layer and head over ``ids`` (1, n): (L, H, n, n)."""
        x = self.embed(ids)
        maps = []
        for block in self.blocks:
            out, att = block.attn.attention(block.ln1(x))  # att: (1, H, n, n)
            maps.append(ops.convert_to_numpy(att)[0])
            x = x + out
            x = x + block.mlp(block.ln2(x))
        return np.stack(maps)


class RNNParts:
    """A recurrent model's layers, and its incremental call: the state carries the text, as
    the one-step model of TensorFlow's text-generation tutorial does."""

    def __init__(self, model: keras.Model):
        self.embedding, self.head = model.get_layer("embedding"), model.get_layer("head")
        self.blocks = [layer for layer in model.layers if isinstance(layer, layers.LSTM | layers.GRU)]
        self.embeddings, self.top = [self.embedding], [self.head]
        self.block_size, self.vocab_size = None, self.embedding.input_dim

    def empty_cache(self, batch: int):
        """Each layer's zero state: (h, c) for an LSTM, (h,) for a GRU, each (B, units)."""
        return tuple(
            tuple(
                ops.zeros((batch, layer.cell.units))
                for _ in range(2 if isinstance(layer, layers.LSTM) else 1)
            )
            for layer in self.blocks
        )

    def call_with_cache(self, ids, state, index=None):
        """Logits (B, n, V) for ``ids`` (B, n) (n known when traced) and the state after them."""
        out = []
        for t in range(ids.shape[1]):
            x = self.embedding(ids[:, t])  # (B, E)
            new = []
            for layer, carried in zip(self.blocks, state, strict=True):
                x, step_state = layer.cell(x, list(carried))
                new.append(tuple(step_state))
            state = tuple(new)
            out.append(self.head(x))  # (B, V)
        return ops.stack(out, axis=1), state


def parts(model: keras.Model, block_size: int | None = None) -> GPTParts | RNNParts:
    """The layers of a model :func:`build_model` made, by role (and its cached call);
    ``block_size`` sizes a GPT's cache where the model has no learned positions."""
    names = {layer.name for layer in model.layers}
    return GPTParts(model, block_size) if "wte" in names else RNNParts(model)


def copy_weights(source: keras.Model, target: keras.Model, blocks: int) -> None:
    """Copy the embeddings, the bottom ``blocks`` blocks and the top layers from ``source``."""
    a, b = parts(source), parts(target)
    pairs = zip(
        [*a.embeddings, *a.blocks[:blocks], *a.top], [*b.embeddings, *b.blocks[:blocks], *b.top], strict=True
    )
    for src, dst in pairs:
        dst.set_weights(src.get_weights())


def freeze_bottom(model: keras.Model, blocks: int) -> None:
    """Freeze the embeddings and the bottom ``blocks`` blocks (nothing when ``blocks`` is 0)."""
    if blocks <= 0:
        return
    p = parts(model)
    for layer in [*p.embeddings, *p.blocks[:blocks]]:
        layer.trainable = False


def hidden_states(model: keras.Model):
    """The symbolic final hidden states (B, T, C) of a functional model: what a classifier reads."""
    p = parts(model)
    return p.ln_f.output if isinstance(p, GPTParts) else p.head.input


def embedding_matrix(model: keras.Model) -> np.ndarray:
    """The token embedding matrix (V, C) of any model this module builds."""
    for layer in model.layers:
        if isinstance(layer, layers.Embedding):
            return keras.ops.convert_to_numpy(layer.embeddings)
    raise ValueError(f"model {model.name} has no embedding layer")
