"""Where a ``nano`` training step's time goes, by taking parts out (issue 8's profile).

    python -m lmcore.bench.step_ablation [--batch 12]

``bench train-profile`` splits a step into forward, backward and its matrix products alone.
This script answers the next question, which non-matmul part costs what: it writes ``nano``'s
forward pass out in plain TensorFlow on the weights of a model built by ``lmcore.nn.models``,
checks that it gives the Keras model's loss, and times forward and forward + backward (each
XLA-compiled, best of 3 × 30 calls) with one part removed at a time: LayerNorm, the attention
core (scores, causal mask, softmax and the weighted sum; the q/k/v and output projections
stay), GELU (ReLU instead), and all three. What is left when all three are gone is the
matrix products plus the embedding lookup, residual additions and the loss.

Prints one JSON object per variant. Each removal changes the function, so the figures are
costs, not a model anyone should train.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import keras
import numpy as np
import tensorflow as tf

from lmcore.nn import models

VARIANTS = {
    "full": {},
    "no LayerNorm": {"norm": False},
    "no attention core": {"attention": False},
    "ReLU for GELU": {"gelu": False},
    "none of the three": {"norm": False, "attention": False, "gelu": False},
}


def _layer_norm(h, gamma, on: bool):
    if not on:
        return h
    mean, var = tf.nn.moments(h, [-1], keepdims=True)
    return (h - mean) * tf.math.rsqrt(var + 1e-5) * gamma


def plain_loss(model, config, batch: int):
    """``nano``'s loss written out in plain TensorFlow on ``model``'s own weights, with switches
    that take LayerNorm, the attention core or GELU out."""
    B, T, C, H = batch, config.block_size, config.n_embd, config.n_head
    weights = {v.path: v for v in model.trainable_variables}

    def w(suffix: str):
        return next(v for path, v in weights.items() if path.endswith(suffix))

    blocks = [
        {k: w(f"block_{i}/{name}") for k, name in
         [("ln1", "ln1/gamma"), ("qkv", "attn/qkv/kernel"), ("proj", "attn/proj/kernel"),
          ("ln2", "ln2/gamma"), ("fc", "fc/kernel"), ("fc_proj", "fc_proj/kernel")]}
        for i in range(config.n_layer)
    ]  # fmt: skip
    wte, pos, ln_f = w("wte/embeddings"), w("wpe/pos"), w("ln_f/gamma")
    causal = tf.constant(np.tril(np.ones((T, T), bool)))

    def attend(qkv):
        q, k, v = (
            tf.transpose(t, (0, 2, 1, 3)) for t in tf.unstack(tf.reshape(qkv, (B, T, 3, H, C // H)), axis=2)
        )
        scores = tf.where(causal, tf.matmul(q, k, transpose_b=True) / math.sqrt(C // H), -1e30)
        return tf.reshape(tf.transpose(tf.nn.softmax(scores) @ v, (0, 2, 1, 3)), (B * T, C))

    def loss(x, y, norm=True, attention=True, gelu=True):
        h = tf.reshape(tf.gather(wte, x) + pos[None, :T], (B * T, C))
        for b in blocks:
            qkv = _layer_norm(h, b["ln1"], norm) @ b["qkv"]  # (B*T, 3C)
            h = h + (attend(qkv) if attention else qkv[:, :C]) @ b["proj"]
            f = _layer_norm(h, b["ln2"], norm) @ b["fc"]
            h = h + (tf.nn.gelu(f, approximate=True) if gelu else tf.nn.relu(f)) @ b["fc_proj"]
        logits = _layer_norm(h, ln_f, norm) @ tf.transpose(wte)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.reshape(y, [-1]), logits))

    return loss


def best_ms(fn, x, y) -> float:
    """Milliseconds per call, the best of 3 x 30 calls after one to compile."""
    fn(x, y)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(30):
            out = fn(x, y)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        best = min(best, (time.perf_counter() - start) / 30 * 1e3)
    return best


def variant_row(name: str, parts: dict, loss, variables, x, y) -> dict:
    """Forward and forward + backward times of ``loss`` with ``parts`` switched off."""
    forward = tf.function(lambda x, y: loss(x, y, **parts), jit_compile=True)

    def grads(x, y):
        with tf.GradientTape() as tape:
            value = loss(x, y, **parts)
        return [
            g if g is not None else tf.zeros(v.shape)
            for g, v in zip(tape.gradient(value, variables), variables, strict=True)
        ]

    backward = tf.function(grads, jit_compile=True)
    return {
        "variant": name,
        "batch": int(x.shape[0]),
        "forward_ms": round(best_ms(forward, x, y), 2),
        "forward_backward_ms": round(best_ms(backward, x, y), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=12)
    args = parser.parse_args()
    config = models.make_config("nano", vocab_size=65)
    keras.utils.set_random_seed(0)
    model = models.build_model(config)
    loss = plain_loss(model, config, args.batch)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, config.vocab_size, (args.batch, config.block_size)), tf.int32)
    y = tf.constant(rng.integers(0, config.vocab_size, (args.batch, config.block_size)), tf.int32)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x))
    assert abs(float(keras_loss) - float(loss(x, y))) < 1e-4, "the plain forward pass is not the model's"
    for name, parts in VARIANTS.items():
        print(json.dumps(variant_row(name, parts, loss, model.trainable_variables, x, y)), flush=True)


if __name__ == "__main__":
    main()
