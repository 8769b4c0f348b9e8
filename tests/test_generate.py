"""Generation: the sampling filters, seeds, greedy decoding, and input fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from lmcore import LMError
from lmcore.generation import decoding
from lmcore.generation.decoding import SamplingOptions

LOGITS = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))


def test_temperature_zero_is_greedy():
    probs = decoding.filter_probs(LOGITS, SamplingOptions(temperature=0))
    assert probs.tolist() == [1, 0, 0, 0, 0]


def test_temperature_one_is_the_softmax():
    np.testing.assert_allclose(decoding.filter_probs(LOGITS, SamplingOptions()), [0.5, 0.2, 0.15, 0.1, 0.05])


def test_top_k_and_top_p():
    top2 = decoding.filter_probs(LOGITS, SamplingOptions(top_k=2))
    np.testing.assert_allclose(top2, [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0])
    nucleus = decoding.filter_probs(LOGITS, SamplingOptions(top_p=0.8))  # 0.5+0.2 < 0.8 <= 0.85
    np.testing.assert_allclose(nucleus, np.array([0.5, 0.2, 0.15, 0, 0]) / 0.85)


def test_high_temperature_flattens():
    hot = decoding.filter_probs(LOGITS, SamplingOptions(temperature=100))
    assert hot.max() - hot.min() < 0.02


@pytest.mark.parametrize(
    "opts, match",
    [
        (SamplingOptions(temperature=-1), "temperature"),
        (SamplingOptions(top_p=0), "top-p"),
        (SamplingOptions(top_p=1.5), "top-p"),
        (SamplingOptions(top_k=-2), "top-k"),
    ],
)
def test_invalid_options_are_refused(opts, match):
    with pytest.raises(LMError, match=match):
        opts.check()


def test_same_seed_same_text_and_greedy_is_deterministic(tiny_run):
    fn, tok, _ = decoding.load_run(tiny_run)
    a = decoding.generate(fn, tok, "The ", 30, SamplingOptions(0.9, seed=5))
    b = decoding.generate(fn, tok, "The ", 30, SamplingOptions(0.9, seed=5))
    c = decoding.generate(fn, tok, "The ", 30, SamplingOptions(0.9, seed=6))
    assert a.text == b.text and len(a.steps) == 30
    assert c.text != a.text
    g1 = decoding.generate(fn, tok, "The ", 20, SamplingOptions(0))
    g2 = decoding.generate(fn, tok, "The ", 20, SamplingOptions(0, seed=99))
    assert g1.text == g2.text


def test_logits_fn_matches_a_full_forward_pass(tiny_run):
    from lmcore import runs
    from lmcore.nn import models

    fn, tok, config = decoding.load_run(tiny_run)
    model = models.load_model(runs.checkpoint(tiny_run), compile=False)
    ids = tok.encode("def f(x):\n    return")
    full = model(ids[None, :]).numpy()[0, -1]
    np.testing.assert_allclose(fn(list(ids)), full, atol=1e-4)


def test_prompt_fallbacks(tiny_run):
    fn, tok, _ = decoding.load_run(tiny_run)
    empty = decoding.generate(fn, tok, "", 5, SamplingOptions(0))
    assert len(empty.steps) == 5 and "empty prompt" in empty.notes[0]
    odd = decoding.generate(fn, tok, "你好🙂", 5, SamplingOptions(0))
    assert "not in the vocabulary" in odd.notes[0]
    with pytest.raises(LMError, match="length"):
        decoding.generate(fn, tok, "x", 0)


def test_token_probs_follow_the_chain_rule_past_the_block(tiny_run):
    fn, tok, config = decoding.load_run(tiny_run)
    ids = [int(i) for i in tok.encode("def function(argument):\n    return the value of the argument")]
    assert len(ids) > config.model.block_size + 5
    probs = decoding.token_probs(fn, ids)
    assert probs.shape == (len(ids) - 1,)
    for i in (1, 10, len(ids) - 1):  # each factor is the model's next-token probability
        assert np.isclose(probs[i - 1], decoding.softmax(fn(ids[:i]))[ids[i]], atol=1e-5)


@pytest.mark.parametrize("name", ["tiny", "seed-lstm", "gru"])
def test_incremental_logits_equal_a_full_forward_pass_at_every_step(name):
    from lmcore.nn import models

    config = models.make_config(name, vocab_size=23, block_size=12)
    model = models.build_model(config)
    rng = np.random.default_rng(0)
    for w in model.weights:  # large random weights, so that a wrong cache shows in the logits
        w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
    decoder = decoding.make_decoder(model, config, batch=2)
    texts = [list(rng.integers(0, 23, 5)), list(rng.integers(0, 23, 5))]
    logits = decoder.start(texts)
    for _ in range(30):  # past the block size of 12: the GPT's window slides
        window = decoder.window if name == "tiny" else texts
        full = model(np.array(window, dtype=np.int32)).numpy()[:, -1]
        assert np.abs(full).max() > 1  # the comparison is not between near-zero numbers
        np.testing.assert_allclose(logits, full, atol=1e-4)
        nxt = rng.integers(0, 23, 2)
        for row, t in zip(texts, nxt, strict=True):
            row.append(int(t))
        logits = decoder.next(nxt)


def test_cached_generation_matches_naive_recomputation(tiny_run):
    fn, tok, config = decoding.load_run(tiny_run)
    cached = decoding.generate(fn, tok, "The ", 60, SamplingOptions(0)).text  # past block 32: slides
    ids, _ = decoding.prompt_ids(tok, "The ")
    for _ in range(60):  # the naive loop: the whole window every step
        ids.append(int(np.argmax(fn(ids))))
    assert cached == tok.decode(ids[len(tok.encode("The ")) :])


def test_several_samples_are_one_batch(tiny_run):
    fn, tok, _ = decoding.load_run(tiny_run)
    texts = decoding.samples(fn, tok, "The ", 25, 4, SamplingOptions(1.0, seed=3))
    assert len(texts) == 4 and len(set(texts)) > 1
    assert texts == decoding.samples(fn, tok, "The ", 25, 4, SamplingOptions(1.0, seed=3))
    greedy = decoding.samples(fn, tok, "The ", 25, 3, SamplingOptions(0))
    assert (
        len(set(greedy)) == 1 and greedy[0] == decoding.generate(fn, tok, "The ", 25, SamplingOptions(0)).text
    )


def test_repetition_penalty_lowers_tokens_already_seen():
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    plain = decoding.filter_probs(logits, SamplingOptions())
    penalized = decoding.filter_probs(logits, SamplingOptions(repetition_penalty=2.0), history=[0, 0, 3])
    assert penalized[0] < plain[0] and penalized[3] < plain[3]  # seen tokens lose probability
    assert penalized[1] > plain[1] and penalized[2] > plain[2]
    with pytest.raises(LMError, match="repetition penalty"):
        SamplingOptions(repetition_penalty=0.5).check()


def test_stop_strings_candidates_and_attention(tiny_run):
    fn, tok, config = decoding.load_run(tiny_run)
    full = decoding.generate(fn, tok, "The ", 40, SamplingOptions(0)).text
    stop = full[5:7]
    cut = decoding.generate(fn, tok, "The ", 40, SamplingOptions(0, stop=(stop,)))
    assert cut.text == full.split(stop, 1)[0] and len(cut.steps) < 40
    step = next(decoding.stream(fn, tok, "The ", 1, SamplingOptions(1.0, top_k=3, seed=0)))
    assert len(step.candidates) == decoding.TOP_CANDIDATES
    assert [c.kept for c in step.candidates] == [True] * 3 + [False] * 7  # top-k 3 keeps 3
    raw = [c.raw_prob for c in step.candidates]
    assert raw == sorted(raw, reverse=True) and step.token_id in [
        c.token_id for c in step.candidates if c.kept
    ]
    assert np.isclose(sum(c.prob for c in step.candidates), 1, atol=1e-5)  # the three kept share it all
    assert step.surprisal_bits == pytest.approx(-np.log2(step.raw_prob))
    ids = [int(i) for i in tok.encode("def f(x): return x")]
    maps = decoding.attention_maps(fn, ids)
    assert maps.shape == (config.model.n_layer, config.model.n_head, len(ids), len(ids))
    np.testing.assert_allclose(maps.sum(-1), 1, atol=1e-5)  # each row is a distribution
    assert np.allclose(np.triu(maps, k=1), 0)  # causal: nothing attends to the future


def test_batched_samples_apply_the_repetition_penalty_per_row(tiny_run):
    fn, tok, _ = decoding.load_run(tiny_run)
    plain = decoding.samples(fn, tok, "The ", 40, 2, SamplingOptions(0))
    penalized = decoding.samples(fn, tok, "The ", 40, 2, SamplingOptions(0, repetition_penalty=3.0))
    assert penalized[0] == penalized[1] != plain[0]  # greedy rows agree; the penalty changes the text


@pytest.mark.parametrize(
    "opts",
    [
        SamplingOptions(),
        SamplingOptions(temperature=0),
        SamplingOptions(temperature=0.5, top_k=4),
        SamplingOptions(temperature=1.3, top_p=0.6),
        SamplingOptions(temperature=0.9, top_k=7, top_p=0.8, repetition_penalty=1.8),
        SamplingOptions(temperature=0, repetition_penalty=5.0),
        SamplingOptions(top_k=1000),
    ],
)
def test_the_in_graph_filter_equals_the_numpy_reference(opts):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (5, 40)).astype("float32")
    history = [rng.integers(0, 40, 6) for _ in range(5)]
    seen = np.zeros((5, 40), dtype=bool)
    for row, h in zip(seen, history, strict=True):
        row[h] = True
    params = (float(opts.temperature), opts.top_k, float(opts.top_p), float(opts.repetition_penalty))
    got = decoding._tf_filter(tf.constant(logits), tf.constant(seen), *map(tf.constant, params)).numpy()
    for row in range(5):
        np.testing.assert_allclose(
            got[row], decoding.filter_probs(logits[row], opts, history[row]), atol=1e-5
        )


def test_in_graph_draws_follow_the_filtered_distribution():
    import tensorflow as tf

    logits = np.log(np.array([[0.5, 0.25, 0.15, 0.07, 0.03]] * 20_000, dtype="float32"))
    opts = [tf.constant(v) for v in (1.0, 0, 0.9, 1.0)]  # top-p 0.9 keeps the first three
    seen = tf.zeros(logits.shape, tf.bool)
    token, (prob, raw, *_), _ = decoding._tf_pick(
        tf.constant(logits), seen, (*opts, tf.constant(7, tf.int64)), tf.constant(0)
    )
    counts = np.bincount(token.numpy(), minlength=5) / len(logits)
    np.testing.assert_allclose(counts, [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0, 0], atol=0.015)
    assert np.allclose(raw.numpy(), np.exp(logits)[np.arange(len(logits)), token.numpy()])


@pytest.mark.parametrize("chunk", [1, 5, decoding.CHUNK])
def test_chunked_in_graph_decoding_matches_step_by_step_decoding(tiny_run, chunk):
    """The compiled loop gives the same tokens as stepping in Python, past a window slide,
    and a seed gives the same text however the work is cut into chunks."""
    fn, tok, config = decoding.load_run(tiny_run)
    ids, _ = decoding.prompt_ids(tok, "The ")
    decoder = fn.decoder(1)
    out = list(decoder.sample([ids], 70, SamplingOptions(0), chunk=chunk))
    in_graph = [int(t[0]) for t, _ in out]
    step_by_step, logits = [], decoder.start([ids])[0]  # block 32: the window slides twice
    for _, (_, raw, top_ids, top_raw, _) in out:
        probs = decoding.softmax(logits)  # the stepped logits equal a full pass (tested above)
        np.testing.assert_allclose(top_raw[0], probs[top_ids[0]], atol=1e-5)
        assert np.isclose(raw[0], probs.max(), atol=1e-5)
        step_by_step.append(int(np.argmax(logits)))
        logits = decoder.next([step_by_step[-1]])[0]
    assert in_graph == step_by_step
    sampled = [int(t[0]) for t, _ in decoder.sample([ids], 70, SamplingOptions(1.0, seed=9), chunk=chunk)]
    reference = [int(t[0]) for t, _ in decoder.sample([ids], 70, SamplingOptions(1.0, seed=9), chunk=16)]
    assert sampled == reference and sampled != in_graph


def test_a_classifier_run_is_refused_with_a_pointer_to_classify_predict(tmp_path):
    import json

    run = tmp_path / "20261128-000000-cls-abcd"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "classify"}))
    with pytest.raises(LMError, match="is a classifier; use: python -m lmcore classify predict"):
        decoding.load_run(run)
