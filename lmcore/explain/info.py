"""Information theory and gradient descent, computed exactly with NumPy (never TensorFlow).

Every function takes ``base``: 2 gives bits, ``math.e`` gives nats. Conventions for zero
probabilities: 0 * log 0 = 0, and p * log(p / 0) = infinity for p > 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-6


def _distribution(p, name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must contain finite, non-negative probabilities")
    if abs(p.sum() - 1.0) > TOLERANCE:
        raise ValueError(f"{name} must sum to 1, not {p.sum():.6g}")
    return p


def _log(x, base: float) -> np.ndarray:
    if base <= 0 or base == 1:
        raise ValueError(f"log base must be positive and not 1, not {base}")
    with np.errstate(divide="ignore"):
        return np.log(x) / math.log(base)


def _plogq(p: np.ndarray, q: np.ndarray, base: float) -> float:
    """sum p * log q with 0 * log q = 0 (even for q = 0)."""
    mask = p > 0
    return float(np.sum(p[mask] * _log(q[mask], base)))


def entropy(p, base: float = 2) -> float:
    """H(p) = -sum_i p_i log p_i. A fair coin has 1 bit; uniform over V symbols, log2 V bits."""
    p = _distribution(p)
    return -_plogq(p, p, base) + 0.0


def cross_entropy(p, q, base: float = 2) -> float:
    """H(p, q) = -sum_i p_i log q_i: the cost of coding p with a code built for q (inf if q_i = 0 < p_i)."""
    p, q = _distribution(p), _distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, not {p.shape} and {q.shape}")
    return -_plogq(p, q, base) + 0.0


def kl_divergence(p, q, base: float = 2) -> float:
    """D(p || q) = sum_i p_i log(p_i / q_i) = H(p, q) - H(p) >= 0; 0 exactly when p = q."""
    h_pq = cross_entropy(p, q, base)
    return math.inf if math.isinf(h_pq) else max(h_pq - entropy(p, base), 0.0)


def _joint(joint) -> np.ndarray:
    joint = _distribution(joint, "joint")
    if joint.ndim != 2:
        raise ValueError(f"a joint distribution is a 2-D table, not {joint.ndim}-D")
    return joint


def joint_entropy(joint, base: float = 2) -> float:
    """H(X, Y) = -sum_xy p(x, y) log p(x, y), for a table joint[x, y]."""
    return entropy(_joint(joint).ravel(), base)


def conditional_entropy(joint, base: float = 2) -> float:
    """H(Y | X) = H(X, Y) - H(X): what is left to learn about Y (columns) once X (rows) is known."""
    joint = _joint(joint)
    return max(joint_entropy(joint, base) - entropy(joint.sum(axis=1), base), 0.0)


def mutual_information(joint, base: float = 2) -> float:
    """I(X; Y) = H(X) + H(Y) - H(X, Y): 0 when independent, H(X) when Y determines X."""
    joint = _joint(joint)
    mi = entropy(joint.sum(axis=1), base) + entropy(joint.sum(axis=0), base) - joint_entropy(joint, base)
    return max(mi, 0.0)


def perplexity(cross_entropy_value: float, base: float = 2) -> float:
    """PPL = base ** H: the number of equally likely choices that would be as uncertain."""
    if not math.isfinite(cross_entropy_value) and cross_entropy_value != math.inf:
        raise ValueError(f"cross-entropy must be a number, not {cross_entropy_value}")
    if cross_entropy_value < 0:
        raise ValueError(f"cross-entropy cannot be negative, not {cross_entropy_value}")
    return float(base**cross_entropy_value) if cross_entropy_value != math.inf else math.inf


def bayes(p_b_given_a: float, p_a: float, p_b: float) -> float:
    """P(A | B) = P(B | A) P(A) / P(B)."""
    for name, value in (("P(B|A)", p_b_given_a), ("P(A)", p_a), ("P(B)", p_b)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], not {value}")
    if p_b == 0:
        raise ValueError("P(B) must be positive to condition on B")
    posterior = p_b_given_a * p_a / p_b
    if posterior > 1 + TOLERANCE:
        raise ValueError(
            f"inconsistent inputs: P(B|A) P(A) = {p_b_given_a * p_a:.4g} exceeds P(B) = {p_b:.4g}"
        )
    return min(posterior, 1.0)


def sequence_log_prob(probs: Sequence[float], base: float = 2) -> float:
    """log P(w_1..w_n) = sum_i log P(w_i | w_1..w_{i-1}) (the chain rule: a product of probabilities).

    ``probs`` are the conditional probabilities of each token given the ones before it.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError("probs must be a non-empty sequence of conditional probabilities")
    if np.any(p < 0) or np.any(p > 1) or not np.all(np.isfinite(p)):
        raise ValueError("each conditional probability must lie in [0, 1]")
    return float(np.sum(_log(p, base)))


def ngram_conditional_entropy(tokens: Sequence, order: int, base: float = 2) -> float:
    """Plug-in estimate of H(X_t | X_{t-order}..X_{t-1}) from counts (order 0 = unigram entropy).

    H = -sum_{c, x} n(c, x)/N log(n(c, x) / n(c)) over all contexts c of ``order`` tokens.
    Estimates fall as the order grows, and fall below the truth once contexts are rarely
    seen twice: read high orders on small corpora with that in mind.
    """
    if order < 0:
        raise ValueError(f"order must be 0 or more, not {order}")
    tokens = list(tokens)
    if len(tokens) <= order:
        raise ValueError(f"need more than {order} tokens for an order-{order} estimate")
    if order == 0:
        counts = np.array(list(Counter(tokens).values()), dtype=np.float64)
        return entropy(counts / counts.sum(), base)
    if all(isinstance(t, str) and len(t) == 1 for t in tokens):
        seq = "".join(tokens)  # characters: string slices count much faster than tuples
    else:
        seq = tuple(tokens)
    pairs = Counter(seq[i - order : i + 1] for i in range(order, len(seq)))
    contexts = Counter(seq[i - order : i] for i in range(order, len(seq)))
    n = len(seq) - order
    joint = np.array(list(pairs.values()), dtype=np.float64)
    ctx = np.array([contexts[key[:-1]] for key in pairs], dtype=np.float64)
    return float(-np.sum(joint / n * _log(joint / ctx, base))) + 0.0


def gradient_descent(grad: Callable[[np.ndarray], np.ndarray], theta0, lr: float, steps: int) -> np.ndarray:
    """θ_{k+1} = θ_k − α ∇J(θ_k); returns every θ on the path, shape (steps + 1, dim).

    The tutorial's worked example: J(θ) = (θ1 − 1)² + θ2², α = 0.1, θ0 = (0.5, 0.5) gives
    θ1 = (0.6, 0.4) after one step (the tutorial prints 0.3 for θ1's first coordinate).
    """
    if steps < 0:
        raise ValueError(f"steps must be 0 or more, not {steps}")
    if not math.isfinite(lr):
        raise ValueError(f"learning rate must be a finite number, not {lr}")
    theta = np.asarray(theta0, dtype=np.float64).copy()
    path = [theta.copy()]
    for _ in range(steps):
        g = np.asarray(grad(theta), dtype=np.float64)
        if g.shape != theta.shape:
            raise ValueError(f"the gradient has shape {g.shape}, θ has {theta.shape}")
        theta = theta - lr * g
        path.append(theta.copy())
    return np.array(path)


@dataclass(frozen=True)
class Step:
    """One gradient-descent step on one training window (:func:`window_step`)."""

    loss_before: float  # mean cross-entropy over the window's positions, nats
    loss_after: float
    target_prob_before: float  # P(the first target) before and after the step
    target_prob_after: float
    grad_target: float  # ∂loss/∂logit of the first target at the first position (negative: raise it)
    grad_other: float  # ∂loss/∂logit of any other token there (positive: lower it)
    grad_norm: float  # the whole gradient's length


def window_step(inputs: Sequence[int], targets: Sequence[int], vocab_size: int, lr: float) -> Step:
    """One step of the simplest language model on one window, with the Math page's update.

    The model is a table of logits W[previous token, next token], started at zero: before
    training every next token is equally likely, so the loss is ln V at every position. The
    loss is the window's mean cross-entropy; its gradient with respect to the logits at one
    position is softmax − one-hot(target), spread over the window's T positions. One step of
    :func:`gradient_descent` (θ ← θ − α∇J) raises each target's logit and lowers the others.
    """
    x, y = np.asarray(inputs, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if x.size == 0 or x.shape != y.shape:
        raise ValueError("a window needs as many targets as inputs, at least one")
    if vocab_size < 2 or x.max() >= vocab_size or y.max() >= vocab_size or min(x.min(), y.min()) < 0:
        raise ValueError(f"token ids must lie in 0..{vocab_size - 1}")
    rows, row_of = np.unique(x, return_inverse=True)  # only the rows the window reads move
    shape = (len(rows), vocab_size)

    def probs(theta: np.ndarray) -> np.ndarray:
        logits = theta.reshape(shape)[row_of]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def loss(theta: np.ndarray) -> float:
        return float(-np.mean(np.log(probs(theta)[np.arange(len(y)), y])))

    def grad(theta: np.ndarray) -> np.ndarray:
        g_logits = probs(theta)
        g_logits[np.arange(len(y)), y] -= 1.0
        g = np.zeros(shape)
        np.add.at(g, row_of, g_logits / len(y))
        return g.ravel()

    before, after = gradient_descent(grad, np.zeros(shape).ravel(), lr, 1)
    at_first = probs(before)[0] / len(y)  # the loss's gradient at the first position's logits
    at_first[y[0]] -= 1.0 / len(y)
    other = 1 if y[0] == 0 else 0
    return Step(
        loss(before),
        loss(after),
        float(probs(before)[0, y[0]]),
        float(probs(after)[0, y[0]]),
        float(at_first[y[0]]),
        float(at_first[other]),
        float(np.linalg.norm(grad(before))),
    )


class BigramModel:
    """P(next | previous) from counts, with add-k smoothing so unseen pairs keep some probability.

    P(b | a) = (n(a, b) + k) / (n(a) + k V), and P(a) = n(a) / N for the marginal.
    """

    def __init__(self, tokens: Sequence, k: float = 1.0):
        tokens = list(tokens)
        if len(tokens) < 2:
            raise ValueError("need at least two tokens to count pairs")
        self.k = k
        self.unigrams = Counter(tokens)
        self.pairs = Counter(zip(tokens, tokens[1:], strict=False))
        self.following = Counter(tokens[:-1])  # n(a) as the previous token of a pair
        self.preceding = Counter(tokens[1:])  # n(b) as the next token of a pair
        self.total = len(tokens)
        self.vocab = sorted(self.unigrams, key=lambda t: (-self.unigrams[t], t))

    def prob(self, token) -> float:
        """P(token), its unigram frequency."""
        return self.unigrams[token] / self.total

    def cond(self, nxt, prev) -> float:
        """P(next | previous), smoothed by k (k = 0: the plain ratio of counts)."""
        V = len(self.unigrams)
        denominator = self.following[prev] + self.k * V
        return (self.pairs[(prev, nxt)] + self.k) / denominator if denominator else 0.0

    def pair_marginals(self, prev, nxt) -> tuple[float, float]:
        """(P(previous = prev), P(next = nxt)) over the corpus's pairs: Bayes' P(A) and P(B)."""
        return self.following[prev] / (self.total - 1), self.preceding[nxt] / (self.total - 1)

    def cond_prev(self, prev, nxt) -> float:
        """P(previous = prev | next = nxt), counted directly (to check Bayes' inversion)."""
        return self.pairs[(prev, nxt)] / self.preceding[nxt] if self.preceding[nxt] else 0.0

    def next_distribution(self, prev, top: int = 15) -> list[tuple[object, float]]:
        """The ``top`` likeliest next tokens after ``prev`` with their probabilities."""
        scored = [(t, self.cond(t, prev)) for t in self.vocab]
        return sorted(scored, key=lambda kv: -kv[1])[:top]

    def sequence_probs(self, tokens: Sequence) -> np.ndarray:
        """P(t_i | t_{i-1}) for i = 1..n-1: the chain rule's factors under this model.

        Tokens the corpus never contains are left out (the model has no probability for them),
        as a trained model's tokenizer leaves them out.
        """
        tokens = [t for t in tokens if t in self.unigrams]
        return np.array([self.cond(b, a) for a, b in zip(tokens, tokens[1:], strict=False)])


def stationary_distribution(transitions) -> np.ndarray:
    """π with π P = π for a row-stochastic matrix P (the left eigenvector for eigenvalue 1)."""
    P = np.asarray(transitions, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"a transition matrix is square, not {P.shape}")
    for row in P:
        _distribution(row, "each row of the transition matrix")
    values, vectors = np.linalg.eig(P.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    return pi / pi.sum()


def markov_entropy_rate(transitions, base: float = 2) -> float:
    """H = sum_i π_i H(P[i, :]): the true bits per symbol of a stationary first-order Markov chain.

    No model of text drawn from the chain can do better on average: it is the floor a trained
    model's validation loss approaches.
    """
    P = np.asarray(transitions, dtype=np.float64)
    pi = stationary_distribution(P)
    return float(sum(w * entropy(row, base) for w, row in zip(pi, P, strict=True)))


def unigram_entropy(tokens: Sequence, base: float = 2) -> float:
    """Entropy of the token frequencies (order-0 estimate), in bits by default."""
    return ngram_conditional_entropy(tokens, 0, base)
