"""Benchmarks: ``python -m lmcore bench generate`` (incremental vs naive decoding).

Each configuration builds an untrained model of a preset's shape (vocabulary 65; speed does
not depend on the weights), warms every path up, then times ``tokens`` greedy tokens per
row with the incremental decoder (key/value cache or carried state) as generation runs it
(chunks from the compiled loop), the same decoder stepped once per token from Python, and
full-window recomputation, and, separately, runs both in lockstep on the same tokens to find the
largest logit difference. Results are measurements, recorded in BENCHMARKS.md, never
asserted by tests.
"""

from __future__ import annotations

import time

import numpy as np

from lmcore.generation import decoding
from lmcore.nn import models

GENERATE_CONFIGS = (  # (label, preset, block size)
    ("nano", "nano", 64),
    ("gpt-block256", "nano", 256),
    ("seed-lstm", "seed-lstm", 100),
)
VOCAB = 65


def _timed(step, first, tokens: int) -> float:
    """Seconds to produce ``tokens`` tokens per row, feeding back the greedy choice."""
    start = time.perf_counter()
    logits = first()
    for _ in range(tokens - 1):
        logits = step(np.argmax(logits, axis=-1))
    return time.perf_counter() - start


def generate_config(label: str, preset: str, block_size: int, batch: int, tokens: int, seed: int = 0) -> dict:
    config = models.make_config(preset, vocab_size=VOCAB, block_size=block_size)
    model = models.build_model(config)
    fn = decoding.LogitsFn(model, config)
    decoder = fn.decoder(batch)
    rng = np.random.default_rng(seed)
    prompt = [list(rng.integers(0, VOCAB, 8)) for _ in range(batch)]

    def naive_run():
        rows = [list(p) for p in prompt]

        def step(nxt):
            for row, t in zip(rows, nxt, strict=True):
                row.append(int(t))
            return fn.batch(rows)

        return step, lambda: fn.batch(rows)

    greedy = decoding.SamplingOptions(temperature=0)

    def cached(n: int) -> float:  # generation as it runs: chunks of tokens from the compiled loop
        start = time.perf_counter()
        for _ in decoder.sample(prompt, n, greedy):
            pass
        return time.perf_counter() - start

    for _ in range(2):  # warm-up: traces and compiles every function on every path
        cached(min(tokens, block_size + 8))
        _timed(decoder.next, lambda: decoder.start(prompt), min(tokens, block_size + 8))
        _timed(*naive_run(), 8)
    cached_s = cached(tokens)
    stepwise_s = _timed(decoder.next, lambda: decoder.start(prompt), tokens)
    naive_s = _timed(*naive_run(), tokens)

    # Lockstep, past a slide of the window: each step against a full pass over the same
    # window (the GPT's cache window; for the RNNs, all the tokens their state has seen).
    diff, rows = 0.0, [list(p) for p in prompt]
    logits = decoder.start(prompt)
    for _ in range(min(tokens, block_size * 2)):
        window = decoder.window if config.family == "gpt" else rows
        full = model(np.array(window, dtype=np.int32), training=False).numpy()[:, -1]
        diff = max(diff, float(np.abs(logits - full).max()))
        nxt = rng.integers(0, VOCAB, batch)
        for row, t in zip(rows, nxt, strict=True):
            row.append(int(t))
        logits = decoder.next(nxt)
    return {
        "model": label,
        "block_size": block_size,
        "batch": batch,
        "tokens": tokens,
        "cached_tokens_per_s": round(batch * tokens / cached_s, 1),
        "naive_tokens_per_s": round(batch * tokens / naive_s, 1),
        "stepwise_tokens_per_s": round(batch * tokens / stepwise_s, 1),  # cached, one Python call a token
        "speedup": round(naive_s / cached_s, 2),
        "max_abs_logit_diff": diff,
    }


def generate_bench(tokens: int = 1000, batches=(1, 8)):
    """Yield one result per (configuration, batch)."""
    for label, preset, block in GENERATE_CONFIGS:
        for batch in batches:
            yield generate_config(label, preset, block, batch, tokens)
