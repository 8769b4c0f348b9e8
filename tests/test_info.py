"""Information theory, checked against exact values and independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmcore.explain import info
from lmcore.text import corpus


def test_coin_and_uniform():
    assert info.entropy([0.5, 0.5]) == 1.0
    assert math.isclose(info.entropy([0.25] * 4), 2.0)
    for V in (3, 65, 1000):
        assert math.isclose(info.entropy(np.full(V, 1 / V)), math.log2(V))
    assert info.entropy([1.0, 0.0]) == 0.0  # 0 log 0 = 0
    assert math.isclose(info.entropy([0.5, 0.5], base=math.e), math.log(2))


def test_cross_entropy_and_kl():
    p = [0.7, 0.2, 0.1]
    assert info.kl_divergence(p, p) == 0.0
    q = [0.5, 0.3, 0.2]
    assert math.isclose(info.kl_divergence(p, q), info.cross_entropy(p, q) - info.entropy(p))
    assert info.kl_divergence(p, q) > 0
    assert info.cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf  # p log(p / 0) = inf
    assert info.kl_divergence([1.0, 0.0], [0.5, 0.5]) == 1.0


def test_cross_entropy_of_a_one_hot_target_matches_keras():
    import keras

    probs = np.array([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], dtype=np.float32)
    targets = np.array([1, 2])
    ours = [info.cross_entropy(np.eye(3)[t], p) for t, p in zip(targets, probs, strict=True)]
    theirs = keras.losses.SparseCategoricalCrossentropy(reduction=None)(targets, probs).numpy() / math.log(2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_mutual_information():
    independent = np.outer([0.3, 0.7], [0.6, 0.4])
    assert math.isclose(info.mutual_information(independent), 0.0, abs_tol=1e-12)
    diagonal = np.diag([0.2, 0.3, 0.5])
    assert math.isclose(info.mutual_information(diagonal), info.entropy([0.2, 0.3, 0.5]))
    assert math.isclose(info.conditional_entropy(diagonal), 0.0, abs_tol=1e-12)
    assert math.isclose(info.conditional_entropy(independent), info.entropy([0.6, 0.4]))
    assert math.isclose(info.joint_entropy(independent), info.entropy([0.3, 0.7]) + info.entropy([0.6, 0.4]))


def test_perplexity_bayes_and_the_chain_rule():
    assert info.perplexity(2.0) == 4.0
    assert math.isclose(info.perplexity(1.0, base=math.e), math.e)
    # P(A|B) = P(B|A) P(A) / P(B): a test 90% sensitive, 1% prevalence, 5.85% positive
    assert math.isclose(info.bayes(0.9, 0.01, 0.0585), 0.9 * 0.01 / 0.0585)
    # the probability of a sentence is the product of conditionals, so log P is their log sum
    probs = [0.5, 0.25, 0.125]
    assert info.sequence_log_prob(probs) == -6.0
    assert math.isclose(2 ** info.sequence_log_prob(probs), 0.5 * 0.25 * 0.125)


def test_the_tutorials_worked_example_takes_theta_to_0_6_0_4():
    grad = lambda th: np.array([2 * (th[0] - 1), 2 * th[1]])
    path = info.gradient_descent(grad, [0.5, 0.5], lr=0.1, steps=1)
    np.testing.assert_allclose(path[1], [0.6, 0.4])
    assert path.shape == (2, 2)
    oscillating = info.gradient_descent(grad, [0.5, 0.5], lr=1.0, steps=2)
    np.testing.assert_allclose(oscillating[2], oscillating[0])  # alpha = 1 bounces back and forth
    diverging = info.gradient_descent(grad, [0.5, 0.5], lr=1.1, steps=20)
    assert abs(diverging[-1, 1]) > abs(diverging[0, 1]) * 10


def test_ngram_estimates():
    text = "ab" * 500
    assert math.isclose(info.ngram_conditional_entropy(text, 0), 1.0)
    assert math.isclose(info.ngram_conditional_entropy(text, 1), 0.0, abs_tol=1e-12)  # fully predictable
    words = ["the", "cat", "the", "dog"] * 50
    assert info.ngram_conditional_entropy(words, 0) == 1.5
    assert 0 < info.ngram_conditional_entropy(words, 1) < 1.5


def test_the_markov_corpus_entropy_rate_matches_the_plugin_estimate_within_one_percent():
    _, P = corpus.markov_chain()
    pi = info.stationary_distribution(P)
    np.testing.assert_allclose(pi @ P, pi, atol=1e-12)
    rate = info.markov_entropy_rate(P)
    text = corpus.load("builtin:markov").text
    estimate = info.ngram_conditional_entropy(text, 1)
    assert abs(estimate - rate) / rate < 0.01
    assert rate < math.log2(len(corpus.MARKOV_ALPHABET)) - 0.5


@pytest.mark.parametrize(
    "call",
    [
        lambda: info.entropy([0.5, 0.6]),
        lambda: info.entropy([-0.1, 1.1]),
        lambda: info.entropy([]),
        lambda: info.cross_entropy([0.5, 0.5], [1.0]),
        lambda: info.mutual_information([0.5, 0.5]),
        lambda: info.bayes(0.5, 0.5, 0.0),
        lambda: info.bayes(0.9, 0.9, 0.1),
        lambda: info.sequence_log_prob([0.5, 1.5]),
        lambda: info.ngram_conditional_entropy("ab", 5),
        lambda: info.perplexity(-1),
        lambda: info.gradient_descent(lambda th: th, [1.0], 0.1, -1),
        lambda: info.entropy([0.5, 0.5], base=1),
    ],
)
def test_invalid_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_one_window_step_starts_at_ln_v_and_its_gradient_is_softmax_minus_one_hot():
    x, y, vocab, lr = [3, 1, 4, 1, 5], [1, 4, 1, 5, 9], 10, 2.0
    s = info.window_step(x, y, vocab, lr)
    assert s.loss_before == pytest.approx(math.log(vocab))  # every token equally likely at first
    assert s.target_prob_before == pytest.approx(1 / vocab)
    assert s.grad_target == pytest.approx((1 / vocab - 1) / len(y))
    assert s.grad_other == pytest.approx(1 / vocab / len(y))
    # the step itself, against the loss computed by hand from the updated table: rows 3, 1, 4, 5
    table = np.zeros((vocab, vocab))
    for a, b in zip(x, y, strict=True):
        table[a] -= lr * (np.full(vocab, 1 / vocab) - np.eye(vocab)[b]) / len(y)
    p = np.exp(table) / np.exp(table).sum(axis=1, keepdims=True)
    assert s.loss_after == pytest.approx(-np.mean([math.log(p[a, b]) for a, b in zip(x, y, strict=True)]))
    assert s.target_prob_after == pytest.approx(p[3, 1])
    assert s.loss_after < s.loss_before


@pytest.mark.parametrize(
    "x, y, vocab", [([], [], 5), ([1, 2], [1], 5), ([1, 7], [2, 3], 5), ([-1], [0], 5), ([0], [0], 1)]
)
def test_a_window_step_refuses_what_is_not_a_window(x, y, vocab):
    with pytest.raises(ValueError):
        info.window_step(x, y, vocab, 1.0)
