"""Sampling options and the next-token filter in NumPy: TensorFlow-free.

:class:`SamplingOptions` is what a page or the command line asks of generation;
:func:`filter_probs` is the filter the compiled decoding loop applies in the graph
(repetition penalty, temperature, top-k, top-p), written plainly as the reference the tests
hold the graph's version to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmcore import LMError


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0  # 0 = greedy; higher = more random
    top_k: int = 0  # keep the k most likely tokens (0 = all)
    top_p: float = 1.0  # keep the smallest set whose probability reaches p (1 = all)
    seed: int | None = None  # fixed seed -> identical text
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the text less likely (1 = off)
    stop: tuple[str, ...] = ()  # generation ends once the new text contains one of these

    def check(self) -> None:
        if not np.isfinite(self.repetition_penalty) or self.repetition_penalty < 1:
            raise LMError(f"repetition penalty must be 1 (off) or more, not {self.repetition_penalty}")
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise LMError(f"temperature must be 0 (greedy) or more, not {self.temperature}")
        if self.top_k < 0:
            raise LMError(f"top-k must be 0 (off) or more, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise LMError(f"top-p must be in (0, 1], not {self.top_p}")


def filter_probs(logits: np.ndarray, opts: SamplingOptions, history=()) -> np.ndarray:
    """Next-token probabilities after the repetition penalty, temperature, top-k and top-p.

    The penalty (as in CTRL) divides a positive logit, or multiplies a negative one, of every
    token in ``history`` by ``opts.repetition_penalty``.
    """
    logits = np.array(logits, dtype=np.float64)
    if opts.repetition_penalty != 1 and len(history):
        seen = np.unique(np.asarray(history, dtype=np.int64))
        logits[seen] = np.where(
            logits[seen] > 0, logits[seen] / opts.repetition_penalty, logits[seen] * opts.repetition_penalty
        )
    if opts.temperature == 0:
        probs = np.zeros_like(logits)
        probs[int(np.argmax(logits))] = 1.0
        return probs
    z = logits / opts.temperature
    if 0 < opts.top_k < len(z):
        kth = np.partition(z, -opts.top_k)[-opts.top_k]
        z = np.where(z >= kth, z, -np.inf)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if opts.top_p < 1:
        order = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, opts.top_p) + 1)]
        mask = np.zeros_like(probs, dtype=bool)
        mask[keep] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return probs


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()
