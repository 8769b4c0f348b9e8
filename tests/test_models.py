"""Models: parameter counts, shapes, causality, and .keras save/load with safe_mode."""

from __future__ import annotations

import numpy as np
import pytest

from lmcore import LMError
from lmcore.nn import models


def lstm_params(n_in, units):  # four gates, each (input + recurrent) weights + bias
    return 4 * (units * (n_in + units) + units)


def gru_params(n_in, units):  # three gates, Keras' reset_after GRU has two bias vectors
    return 3 * (units * (n_in + units) + 2 * units)


def test_seed_lstm_is_the_tutorials_network():
    model = models.build_model(models.make_config("seed-lstm", vocab_size=65))
    expected = 65 * 64 + lstm_params(64, 128) + lstm_params(128, 128) + (128 * 65 + 65)
    assert expected == 242_945
    assert model.count_params() == expected


def test_gru_has_the_same_shape_with_gru_cells():
    model = models.build_model(models.make_config("gru", vocab_size=65))
    assert model.count_params() == 65 * 64 + gru_params(64, 128) + gru_params(128, 128) + 128 * 65 + 65


def test_nano_gpt_parameter_count():
    c = models.make_config("nano", vocab_size=65)
    C = c.n_embd
    per_block = 2 * C + 3 * C * C + C * C + 4 * C * C + 4 * C * C  # 2 LN gains, qkv, proj, MLP
    expected = 65 * C + c.block_size * C + c.n_layer * per_block + C  # tied head, final LN gain
    assert expected == 804_096  # "0.80 M"
    assert models.build_model(c).count_params() == expected


@pytest.mark.parametrize("name", ["seed-lstm", "gru", "tiny"])
def test_logits_shape_and_causality(name):
    config = models.make_config(name, vocab_size=11, block_size=12)
    model = models.build_model(config)
    x = np.random.default_rng(0).integers(0, 11, (2, 12)).astype("int32")
    y = model(x).numpy()
    assert y.shape == (2, 12, 11) and y.dtype == np.float32
    x2 = x.copy()
    x2[:, 7:] = (x2[:, 7:] + 1) % 11  # change the future...
    y2 = model(x2).numpy()
    np.testing.assert_allclose(y2[:, :7], y[:, :7], atol=1e-5)  # ...the past does not see it
    assert not np.allclose(y2[:, 7:], y[:, 7:])


@pytest.mark.parametrize("name", ["seed-lstm", "tiny"])
def test_save_and_load_with_safe_mode_give_identical_logits(name, tmp_path):
    model = models.build_model(models.make_config(name, vocab_size=13, block_size=10))
    x = np.random.default_rng(1).integers(0, 13, (3, 10)).astype("int32")
    model.save(tmp_path / "m.keras")
    again = models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(again(x).numpy(), model(x).numpy())


def test_config_errors():
    with pytest.raises(LMError, match="unknown model 'gpt5'.*nano"):
        models.make_config("gpt5")
    with pytest.raises(LMError, match="multiple of n_head"):
        models.make_config("nano", n_head=3)
    with pytest.raises(LMError, match="dropout"):
        models.make_config("nano", dropout=1.5)


def test_config_round_trips_through_a_dict():
    from dataclasses import asdict

    c = models.make_config("nano", vocab_size=70, dropout=0.1)
    assert models.config_from_dict(asdict(c)) == c


GPT_PRESETS = [name for name, (cls, _) in models.PRESETS.items() if cls is models.GPTConfig]


@pytest.mark.parametrize("name", GPT_PRESETS)
def test_the_cached_call_gives_the_full_pass_logits_at_every_position(name):
    """Every GPT preset (and any added later): the model's cached, incremental call, a token at
    a time and a chunk at a time, equals one full pass; then past the block, where the
    decoder's window slides, each step still equals a full pass over its window."""
    from lmcore.generation import decoding

    config = models.make_config(name, vocab_size=23, block_size=12, dropout=0.0)
    model = models.build_model(config)
    rng = np.random.default_rng(0)
    for w in model.weights:  # large random weights (for their width), so a wrong cache shows
        scale = 0.5 if len(w.shape) < 2 else 3 / np.sqrt(w.shape[0])
        w.assign(rng.normal(0, scale, w.shape).astype("float32"))
    ids = rng.integers(0, 23, (2, 12)).astype("int32")
    full = model(ids).numpy()  # (B, T, V)
    assert np.abs(full).max() > 1  # the comparison is not between near-zero numbers
    net = models.parts(model, config.block_size)
    cache, stepped = net.empty_cache(2), []
    for t in range(12):
        logits, cache = net.call_with_cache(ids[:, t : t + 1], cache, t)
        stepped.append(logits.numpy()[:, 0])
    np.testing.assert_allclose(np.stack(stepped, axis=1), full, atol=1e-4)
    head, cache = net.call_with_cache(ids[:, :5], net.empty_cache(2), 0)  # a chunk, then the rest
    tail, _ = net.call_with_cache(ids[:, 5:], cache, 5)
    np.testing.assert_allclose(np.concatenate([head.numpy(), tail.numpy()], axis=1), full, atol=1e-4)

    decoder = decoding.make_decoder(model, config, batch=2)
    logits = decoder.start([list(r[:5]) for r in ids])
    for _ in range(25):  # past the block size of 12: the window slides twice
        window = np.array(decoder.window, dtype=np.int32)
        np.testing.assert_allclose(logits, model(window).numpy()[:, -1], atol=1e-4)
        logits = decoder.next(rng.integers(0, 23, 2))
