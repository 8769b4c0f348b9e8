"""Datasets: the split, window/target alignment, the tf.data stream, and augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from lmcore import LMError
from lmcore.text import windows


def test_split_is_contiguous_90_10():
    ids = np.arange(1000)
    train, val = windows.split(ids)
    assert len(train) == 900 and len(val) == 100
    assert train[-1] + 1 == val[0]


def test_windows_targets_are_inputs_shifted_by_one():
    ids = np.arange(50)
    x, y = windows.pairs(ids, 8, [0, 10, 41])
    assert x.shape == y.shape == (3, 8)
    assert (y[:, :-1] == x[:, 1:]).all()
    assert x[2].tolist() == list(range(41, 49)) and y[2, -1] == 49


def test_too_short_corpus_is_refused_with_the_numbers():
    train, val = windows.split(np.arange(100))
    with pytest.raises(LMError, match="too short: 100 tokens.*block size of 64"):
        windows.check_length(train, val, 64)


def test_train_stream_alignment_epoch_coverage_and_exact_resume():
    ids = np.arange(41, dtype=np.int32)  # 41 tokens, block 4 -> 37 window starts
    ds = windows.train_dataset(ids, block_size=4, batch_size=6, seed=3)
    batches = [(x.numpy(), y.numpy()) for x, y in ds.take(12)]
    x0, y0 = batches[0]
    assert x0.shape == (6, 4) and x0.dtype == np.int32
    assert (y0 == x0 + 1).all()  # ids are consecutive, so every target is its input + 1
    per_epoch = 37 // 6  # 6 steps of 6 windows each epoch
    epoch0 = np.concatenate([x[:, 0] for x, _ in batches[:per_epoch]])
    assert len(set(epoch0.tolist())) == len(epoch0) == 36  # no window twice in an epoch
    epoch1 = np.concatenate([x[:, 0] for x, _ in batches[per_epoch : 2 * per_epoch]])
    assert epoch1.tolist() != epoch0.tolist()  # a new order each epoch
    resumed = windows.train_dataset(ids, block_size=4, batch_size=6, seed=3, start_step=7)
    rx, _ = next(iter(resumed))
    assert (rx.numpy() == batches[7][0]).all()


def test_validation_windows_are_fixed_and_disjoint():
    starts = windows.val_starts(1000, 10, 5)
    assert len(starts) == 5
    assert (np.diff(starts) >= 10).all()  # no two windows overlap
    assert starts[0] == 0 and starts[-1] + 10 < 1000 and starts[-1] > 900  # spread over the split
    assert len(windows.val_starts(1000, 10, 500)) == 99  # capped by what fits


def test_augmentations():
    rng = np.random.default_rng(0)
    rows = np.tile(np.arange(100, dtype=np.int32), (4, 1))
    same = windows.augment(rows, 50, 100, windows.Augment(), rng)
    assert (same == rows[:, :50]).all()
    swapped = windows.augment(rows, 50, 100, windows.Augment(swap=0.2), rng)
    assert sorted(swapped[0].tolist()) == list(range(50)) and swapped[0].tolist() != list(range(50))
    deleted = windows.augment(rows, 50, 100, windows.Augment(delete=0.2), rng)
    assert (np.diff(deleted, axis=1) >= 1).all() and deleted[:, -1].max() > 49  # later tokens moved up
    subst = windows.augment(rows, 50, 7, windows.Augment(substitute=1.0), rng)
    assert subst.max() < 7


def test_augmented_stream_keeps_shapes():
    ids = np.arange(500, dtype=np.int32) % 50
    aug = windows.Augment(delete=0.1, substitute=0.1, swap=0.1)
    x, y = next(iter(windows.train_dataset(ids, 16, 4, aug=aug, vocab_size=50)))
    assert x.shape == y.shape == (4, 16)
