"""Generation: sample text from a trained run, one token at a time.

Each step runs the model on the last ``block_size`` tokens, padded on the right to a fixed
shape so that one compiled function serves every step (causal models ignore what lies to
the right of the position read). Sampling happens in NumPy with a seeded generator, so a
fixed seed gives identical text; temperature 0 is greedy decoding.

Fallbacks (documented, never a crash): an empty prompt starts from a newline (or token 0
when the vocabulary has no newline); prompt characters the vocabulary lacks are dropped
and counted in ``Generation.notes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmcore import LMError
from lmcore import tokenizers as tok_mod

MAX_LENGTH = 10_000


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0  # 0 = greedy; higher = more random
    top_k: int = 0  # keep the k most likely tokens (0 = all)
    top_p: float = 1.0  # keep the smallest set whose probability reaches p (1 = all)
    seed: int | None = None  # fixed seed -> identical text

    def check(self) -> None:
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise LMError(f"temperature must be 0 (greedy) or more, not {self.temperature}")
        if self.top_k < 0:
            raise LMError(f"top-k must be 0 (off) or more, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise LMError(f"top-p must be in (0, 1], not {self.top_p}")


def filter_probs(logits: np.ndarray, opts: SamplingOptions) -> np.ndarray:
    """Next-token probabilities after temperature, top-k and top-p (sums to 1)."""
    logits = np.asarray(logits, dtype=np.float64)
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


class LogitsFn:
    """Next-token logits for a context, through one compiled fixed-shape function."""

    def __init__(self, model, block_size: int):
        import tensorflow as tf

        self.model, self.block_size = model, block_size
        spec = tf.TensorSpec((None, block_size), tf.int32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def __call__(self, context: list[int]) -> np.ndarray:
        """Logits (V,) for the token after ``context``."""
        ctx = list(context)[-self.block_size :]
        x = np.zeros((1, self.block_size), dtype=np.int32)
        x[0, : len(ctx)] = ctx
        return self._fn(x).numpy()[0, len(ctx) - 1]


def token_probs(logits_fn: LogitsFn, ids: list[int]) -> np.ndarray:
    """P(ids[i] | ids[:i]) for i = 1..n-1 under the model (the chain rule's factors).

    The first block comes from one forward pass; each later token is scored with the last
    ``block_size`` tokens before it, as generation would see them.
    """
    ids = [int(i) for i in ids]
    T = logits_fn.block_size
    head = ids[: T + 1]
    x = np.zeros((1, T), dtype=np.int32)
    x[0, : len(head) - 1] = head[:-1]
    logits = [*logits_fn._fn(x).numpy()[0, : len(head) - 1]]  # (n-1, V) for the first block
    logits += [logits_fn(ids[:i]) for i in range(T + 1, len(ids))]
    probs = [softmax(row)[nxt] for row, nxt in zip(logits, ids[1:], strict=True)]
    return np.array(probs)


@dataclass
class Step:
    """One generated token and why it was chosen."""

    token_id: int
    text: str
    prob: float  # its probability under the filtered distribution it was drawn from
    raw_prob: float  # its probability under the model's plain softmax


@dataclass
class Generation:
    prompt: str
    text: str  # the continuation only
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def prompt_ids(tokenizer, prompt: str) -> tuple[list[int], list[str]]:
    """Encode a prompt with the documented fallbacks; returns (ids, notes)."""
    notes = []
    unknown = tokenizer.unknown(prompt)
    if unknown:
        shown = "".join(sorted(unknown))[:20]
        notes.append(
            f"{sum(unknown.values())} prompt character(s) not in the vocabulary "
            f"were {'dropped' if tokenizer.kind == 'char' else 'mapped to <unk>'}: {shown!r}"
        )
    ids = [int(i) for i in tokenizer.encode(prompt)]
    if not ids:
        start = tokenizer.encode("\n")
        ids = [int(start[0])] if len(start) else [0]
        notes.append("empty prompt: starting from a newline")
    return ids, notes


def stream(
    logits_fn: LogitsFn, tokenizer, prompt: str, length: int, opts: SamplingOptions = SamplingOptions()
) -> Iterator[Step]:
    """Yield ``length`` generated tokens one at a time."""
    opts.check()
    ids, _ = prompt_ids(tokenizer, prompt)
    rng = np.random.default_rng(opts.seed)
    for _ in range(length):
        logits = logits_fn(ids)
        probs = filter_probs(logits, opts)
        nxt = int(np.argmax(probs)) if opts.temperature == 0 else int(rng.choice(len(probs), p=probs))
        ids.append(nxt)
        yield Step(nxt, tokenizer.token(nxt), float(probs[nxt]), float(softmax(logits)[nxt]))


def generate(
    logits_fn: LogitsFn, tokenizer, prompt: str, length: int, opts: SamplingOptions = SamplingOptions()
) -> Generation:
    """Generate ``length`` tokens after ``prompt``."""
    if not 1 <= length <= MAX_LENGTH:
        raise LMError(f"length must be between 1 and {MAX_LENGTH}, not {length}")
    opts.check()
    _, notes = prompt_ids(tokenizer, prompt)
    steps = list(stream(logits_fn, tokenizer, prompt, length, opts))
    return Generation(prompt, tokenizer.decode([s.token_id for s in steps]), steps, notes)


def load_run(run_dir: Path, which: str = "last"):
    """(LogitsFn, tokenizer, config) for a run's checkpoint (``last`` or ``best``)."""
    from lmcore import models, runs

    path = runs.existing_checkpoint(run_dir, which)
    if path is None:
        raise LMError(f"run {run_dir.name} has no checkpoint yet")
    config = runs.read_json(run_dir / "config.json")
    tokenizer = tok_mod.load(run_dir / "tokenizer.json")
    model = models.load_model(path, compile=False)
    return LogitsFn(model, config["model"]["block_size"]), tokenizer, config
