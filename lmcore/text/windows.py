"""Datasets: the train/validation split, next-token windows, and the tf.data pipelines.

Every window of ``block_size + 1`` tokens gives an input ``x = w[:T]`` and a target
``y = w[1:T+1]``: the model is scored at every position (next-token prediction), not once
per padded sequence as in the tutorial. The training stream visits windows in a seeded random order
that changes every epoch, each window at most once per epoch
(``tf.random.experimental.index_shuffle``: no shuffle buffer to fill, and a resumed run
continues the exact same order); validation uses a
fixed set of non-overlapping windows so that its loss is comparable across steps.

The tutorial's augmentations (random deletion, substitution and swap of tokens) are NumPy
functions, applied to training windows only and off by default, so the dashboard previews
exactly what training would see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmcore import LMError

VAL_FRACTION = 0.1


def split(ids: np.ndarray, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: the first 90% trains, the last 10% validates."""
    n_train = int(len(ids) * (1 - val_fraction))
    return ids[:n_train], ids[n_train:]


def check_length(train_ids: np.ndarray, val_ids: np.ndarray, block_size: int) -> None:
    """Refuse corpora too short to give one training and one validation window."""
    need = block_size + 1
    if len(train_ids) < need or len(val_ids) < need:
        total = len(train_ids) + len(val_ids)
        raise LMError(
            f"the corpus is too short: {total} tokens, but a block size of {block_size} needs at "
            f"least {int(np.ceil(need / VAL_FRACTION))} (each split needs {need}); "
            "use more text or a smaller --block-size"
        )


def pairs(ids: np.ndarray, block_size: int, starts) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for windows beginning at ``starts``: shapes (N, T) and (N, T)."""
    idx = np.asarray(starts)[:, None] + np.arange(block_size + 1)  # (N, T+1)
    w = ids[idx]
    return w[:, :-1], w[:, 1:]


@dataclass(frozen=True)
class Augment:
    """Per-token probabilities of the tutorial's three augmentations (0 = off)."""

    delete: float = 0.0  # drop the token; later tokens move up
    substitute: float = 0.0  # replace the token by a uniformly random one
    swap: float = 0.0  # exchange the token with its right neighbour

    @property
    def active(self) -> bool:
        return self.delete > 0 or self.substitute > 0 or self.swap > 0

    def slack(self, block_size: int) -> int:
        """Extra tokens to read so that a window still has T+1 tokens after deletions."""
        return int(np.ceil(3 * self.delete * (block_size + 1))) + 2 if self.delete > 0 else 0


def augment(
    rows: np.ndarray, length: int, vocab_size: int, aug: Augment, rng: np.random.Generator
) -> np.ndarray:
    """Apply ``aug`` to each row of ``rows`` (N, L >= length); returns (N, length)."""
    out = np.empty((len(rows), length), dtype=rows.dtype)
    for n, row in enumerate(rows):
        if aug.delete > 0:
            kept = row[rng.random(len(row)) >= aug.delete]
            row = kept if len(kept) >= length else row  # rare: too many deleted, keep as is
        row = np.array(row[:length])
        if aug.substitute > 0:
            hit = rng.random(length) < aug.substitute
            row[hit] = rng.integers(0, vocab_size, hit.sum())
        if aug.swap > 0:
            for i in np.flatnonzero(rng.random(length - 1) < aug.swap):
                row[i], row[i + 1] = row[i + 1], row[i]
        out[n] = row
    return out


def train_dataset(
    ids: np.ndarray,
    block_size: int,
    batch_size: int,
    *,
    seed: int = 0,
    start_step: int = 0,
    aug: Augment = Augment(),
    vocab_size: int = 0,
):
    """An endless tf.data stream of (x, y) batches, each (B, T) int32.

    Step ``s`` always holds the same windows for a given seed, so resuming at
    ``start_step`` continues the stream exactly.
    """
    import tensorflow as tf

    span = block_size + 1 + aug.slack(block_size)
    n = len(ids) - span + 1  # window starts
    if n < 1:
        raise LMError(f"the training split ({len(ids)} tokens) is shorter than one window")
    tokens = tf.constant(ids, dtype=tf.int32)
    offsets = tf.range(span, dtype=tf.int64)

    per_epoch = max(1, n // batch_size)  # steps per epoch; each window at most once per epoch

    def batch_at(step):  # step -> (B, span) token windows
        epoch = step // per_epoch
        slots = (step % per_epoch) * batch_size + tf.range(batch_size, dtype=tf.int64)  # (B,)
        starts = tf.random.experimental.index_shuffle(
            slots % n, tf.stack([tf.cast(seed, tf.int64), epoch]), tf.cast(n - 1, tf.int64)
        )
        return tf.gather(tokens, starts[:, None] + offsets[None, :])  # (B, span)

    ds = tf.data.Dataset.counter(start=start_step).map(batch_at)
    if aug.active:

        def apply(w, step):
            rng = np.random.default_rng([seed, int(step)])
            return augment(w, block_size + 1, vocab_size, aug, rng)

        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.counter(start=start_step)).map(
            lambda w, s: tf.ensure_shape(
                tf.numpy_function(apply, [w, s], tf.int32), [batch_size, block_size + 1]
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    ds = ds.map(lambda w: (w[:, :-1], w[:, 1:]))
    return ds.prefetch(tf.data.AUTOTUNE)


def val_starts(n_tokens: int, block_size: int, max_windows: int) -> np.ndarray:
    """Starts of up to ``max_windows`` non-overlapping validation windows, spread evenly."""
    starts = np.arange(0, n_tokens - block_size, block_size)
    if len(starts) > max_windows:
        starts = starts[np.linspace(0, len(starts) - 1, max_windows).astype(int)]
    return starts


def val_dataset(ids: np.ndarray, block_size: int, batch_size: int, max_batches: int):
    """A fixed, finite tf.data set of validation batches (same windows every time)."""
    import tensorflow as tf

    starts = val_starts(len(ids), block_size, max_batches * batch_size)
    x, y = pairs(ids, block_size, starts)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().prefetch(2)
