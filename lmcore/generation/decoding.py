"""Generation: sample text from a trained run, one token at a time.

Decoding is incremental, through the model's own cached call (:mod:`lmcore.nn.models`): each
new token costs one position's work. Tokens come in chunks from one compiled loop
(``tf.while_loop`` under XLA) that steps the model, filters the distribution (repetition
penalty, temperature, top-k, top-p; :func:`lmcore.generation.sampling.filter_probs` is its NumPy
reference) and draws the token in the graph. Draws are keyed by (seed, token index), so a
seed gives the same text however the work is chunked; temperature 0 is greedy.

Fallbacks (documented, never a crash): an empty prompt starts from a newline (or token 0
when the vocabulary has no newline); prompt characters the vocabulary lacks are dropped
and counted in ``Generation.notes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lmcore import LMError, runs
from lmcore.generation.sampling import SamplingOptions, filter_probs, softmax  # noqa: F401 (also decoding's API)
from lmcore.text import tokenizers

MAX_LENGTH = 10_000
TOP_CANDIDATES = 10  # candidates reported with each generated token
CHUNK = 16  # tokens per call of the compiled decoding loop (the page streams chunk by chunk)
DEFAULTS = SamplingOptions()  # temperature 1, no filters


def _models():
    """:mod:`lmcore.nn.models`, once a model is at hand: it imports Keras, and the pages that
    import this module (Generate, Math) open without it."""
    from lmcore.nn import models  # Keras: only once a model is loaded or built

    return models


class LogitsFn:
    """A loaded model's next-token logits, two ways.

    Calling it runs the whole window (the last ``block_size`` tokens, padded on the right to
    one compiled shape): the naive reference. :meth:`decoder` gives the incremental decoder
    (key/value cache or carried state) that generation uses.
    """

    def __init__(self, model, model_config, jit: bool = True):
        import tensorflow as tf

        self.model, self.config, self.jit = model, model_config, jit
        self.block_size = model_config.block_size
        spec = tf.TensorSpec((None, self.block_size), tf.int32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._decoders: dict[int, object] = {}

    def __call__(self, context: list[int]) -> np.ndarray:
        """Logits (V,) for the token after ``context``."""
        return self.batch([context])[0]

    def batch(self, contexts: list[list[int]]) -> np.ndarray:
        """Logits (B, V) after each of several equally long contexts, by full recomputation."""
        ctx = np.array([list(c)[-self.block_size :] for c in contexts], dtype=np.int32)  # (B, n)
        x = np.zeros((len(ctx), self.block_size), dtype=np.int32)
        x[:, : ctx.shape[1]] = ctx
        return self._fn(x).numpy()[:, ctx.shape[1] - 1]

    def decoder(self, batch: int = 1):
        """The incremental decoder for ``batch`` rows (built once per batch size)."""
        if batch not in self._decoders:
            self._decoders[batch] = make_decoder(self.model, self.config, batch, self.jit)
        return self._decoders[batch]


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


# ---------------------------------------------------------------------------- in-graph sampling


def _tf_filter(logits, seen, temperature, top_k, top_p, penalty):
    """:func:`filter_probs` in TensorFlow, for rows of logits (B, V); ``seen`` (B, V) bool.

    Everything is a tensor (no Python branches on the options), so one compiled loop serves
    every setting.
    """
    import tensorflow as tf

    logits = tf.where(seen, tf.where(logits > 0, logits / penalty, logits * penalty), logits)
    V = tf.shape(logits)[-1]
    greedy = tf.one_hot(tf.argmax(logits, -1, output_type=tf.int32), V)
    z = logits / tf.maximum(temperature, 1e-6)
    k = tf.where((top_k > 0) & (top_k < V), top_k, V)
    kth = tf.gather(tf.sort(z, axis=-1, direction="DESCENDING"), k - 1, axis=-1)[:, None]  # (B, 1)
    probs = tf.nn.softmax(tf.where(z >= kth, z, -math.inf))
    # Nucleus: keep the likeliest tokens up to and including the one whose cumulative
    # probability reaches top_p (the same count as the NumPy reference keeps).
    desc = tf.sort(probs, axis=-1, direction="DESCENDING")
    count = tf.reduce_sum(tf.cast(tf.cumsum(desc, axis=-1) < top_p, tf.int32), -1)  # (B,)
    floor = tf.gather(desc, tf.minimum(count, V - 1), axis=-1, batch_dims=1)[:, None]
    nucleus = tf.where(probs >= floor, probs, 0.0)
    probs = tf.where(top_p < 1, nucleus / tf.reduce_sum(nucleus, -1, keepdims=True), probs)
    return tf.where(temperature > 0, probs, greedy)


def _tf_pick(logits, seen, params, index):
    """Filter and draw one token per row; returns (token (B,), facts about it, new ``seen``).

    ``params`` = (temperature, top_k, top_p, penalty, seed); the draw is keyed by (seed,
    index), where ``index`` counts the tokens generated so far.
    """
    import tensorflow as tf

    temperature, top_k, top_p, penalty, seed = params
    probs = _tf_filter(logits, seen, temperature, top_k, top_p, penalty)
    # Inverse-CDF draw from one stateless uniform number per row: token i is drawn when
    # cum[i-1] <= u < cum[i], so a token the filters removed (zero probability) never is.
    cum = tf.cumsum(probs, axis=-1)
    u = tf.random.stateless_uniform(
        (tf.shape(probs)[0], 1), tf.stack([seed, tf.cast(index, tf.int64)]), alg="philox"
    )
    drawn = tf.reduce_sum(tf.cast(cum <= u * cum[:, -1:], tf.int32), -1)
    token = tf.where(temperature > 0, drawn, tf.argmax(probs, -1, output_type=tf.int32))
    raw = tf.nn.softmax(logits)
    top_raw, top_ids = tf.math.top_k(raw, k=min(TOP_CANDIDATES, logits.shape[-1]))
    facts = (
        tf.gather(probs, token, axis=-1, batch_dims=1),  # chosen token: filtered probability
        tf.gather(raw, token, axis=-1, batch_dims=1),  # ... and the model's own
        top_ids,
        top_raw,
        tf.gather(probs, top_ids, axis=-1, batch_dims=1),  # the candidates after the filters
    )
    return token, facts, seen | tf.one_hot(token, tf.shape(logits)[-1], on_value=True, off_value=False)


class _Carry:
    """One generation's own state: the tokens in the window and the cache or recurrent state.

    Kept apart from the decoder (whose compiled functions are shared) so that several
    sessions can generate with one loaded model at the same time.
    """

    def __init__(self, window: list[list[int]]):
        self.window, self.state = window, None


class _Decoder:
    """What both incremental decoders share: sampling in the graph, in chunks.

    A subclass provides ``_step_impl(token, pos, state) -> (logits, state)`` (one token per
    row, in the graph), ``_begin(carry)`` and ``_feed(carry, tokens)`` (the Python-level
    steps; each returns the next logits) and ``_room(carry)``: how many more tokens the
    compiled loop may add before the Python side must rebuild the state. ``start``/``next``
    step one shared carry, for the tests and the benchmark's equality check.
    """

    def _compile_loop(self, jit: bool):
        """``jit``: XLA for the loop, about 3x the speed of the same loop without it (nano, CPU),
        after a compilation of a few seconds."""
        import tensorflow as tf

        self.jit = jit
        self._pick = tf.function(_tf_pick, jit_compile=jit)
        self._loop = tf.function(self._loop_impl, jit_compile=jit)
        self._carry = _Carry([])

    @property
    def window(self) -> list[list[int]]:
        return self._carry.window

    def start(self, prompts: list[list[int]]) -> np.ndarray:
        """Encode one prompt per row (equal lengths); returns next-token logits (B, V)."""
        self._carry = _Carry([list(p) for p in prompts])
        return self._begin(self._carry)

    def next(self, tokens) -> np.ndarray:
        """Append one token per row; returns the logits (B, V) that follow it."""
        return self._feed(self._carry, [int(t) for t in tokens])

    def _loop_impl(self, token, pos, state, seen, params, index, n):
        """Feed ``token`` and keep going for ``n`` tokens; returns (tokens (n, B), facts, ...)."""
        import tensorflow as tf

        def body(i, token, state, seen, arrays):
            logits, state = self._step_impl(token, pos + i, state)
            token, facts, seen = _tf_pick(logits, seen, params, index + i)
            arrays = tuple(a.write(i, x) for a, x in zip(arrays, (token, *facts), strict=True))
            return i + 1, token, state, seen, arrays

        # A fixed size, so that XLA compiles once; the loop fills the first ``n`` rows.
        arrays = tuple(
            tf.TensorArray(dtype, size=CHUNK)
            for dtype in (tf.int32, *[tf.float32] * 2, tf.int32, *[tf.float32] * 2)
        )
        _, token, state, seen, arrays = tf.while_loop(
            lambda i, *_: i < n, body, (tf.constant(0), token, state, seen, arrays)
        )
        return tuple(a.stack() for a in arrays), state, seen

    def sample(self, prompts: list[list[int]], length: int, opts: SamplingOptions, chunk: int = CHUNK):
        """Yield (tokens (B,), facts) for ``length`` tokens after equally long ``prompts``.

        ``facts`` = (probability after the filters, raw probability, top candidate ids, their
        raw and filtered probabilities), NumPy arrays with a leading batch axis.
        """
        import tensorflow as tf

        if not 1 <= chunk <= CHUNK:
            raise ValueError(f"chunk must be between 1 and {CHUNK}, not {chunk}")
        seed = opts.seed if opts.seed is not None else int(np.random.default_rng().integers(2**31))
        params = (
            tf.constant(opts.temperature, tf.float32),
            tf.constant(opts.top_k, tf.int32),
            tf.constant(opts.top_p, tf.float32),
            tf.constant(opts.repetition_penalty, tf.float32),
            tf.constant(seed, tf.int64),
        )
        seen = np.zeros((len(prompts), self.vocab_size), dtype=bool)
        for row, ids in zip(seen, prompts, strict=True):
            row[np.asarray(ids, dtype=np.int64)] = True
        seen = tf.constant(seen)
        carry = _Carry([list(p) for p in prompts])
        logits, done = self._begin(carry), 0
        while True:
            # One token from logits computed on the Python side (after the prompt, or after
            # the window slid), then as many as the state has room for from the compiled loop.
            token, facts, seen = self._pick(tf.constant(logits), seen, params, tf.constant(done, tf.int32))
            yield token.numpy(), tuple(f.numpy() for f in facts)
            done += 1
            while done < length and self._room(carry) > 0:
                n = min(chunk, self._room(carry), length - done)
                fed = token.numpy()
                arrays, carry.state, seen = self._loop(
                    token, self._pos(carry), carry.state, seen, params, tf.constant(done), tf.constant(n)
                )
                arrays = [a.numpy()[:n] for a in arrays]
                self._advance(carry, fed, arrays[0])
                token = tf.constant(arrays[0][-1])
                for i in range(n):
                    yield arrays[0][i], tuple(a[i] for a in arrays[1:])
                done += n
            if done >= length:
                return
            logits = self._feed(carry, [int(t) for t in token.numpy()])


class GPTDecoder(_Decoder):
    """Key/value-cached decoding for the GPT, through the model's own cached call
    (:meth:`lmcore.nn.models.GPTParts.call_with_cache`): each new token attends to stored keys
    and values.

    The cache holds ``block_size`` positions per layer. The prompt is encoded in one
    fixed-shape pass (padded on the right: causal attention ignores the padding); each step
    then writes one position and attends to those before it. Positions are absolute (learned
    embeddings), so when the window is full it slides by rebuilding the cache from the last
    ``block_size // 2`` tokens: the logits are always those of a full pass over the window.
    """

    def __init__(self, model, block_size: int, batch: int = 1, jit: bool = True):
        import tensorflow as tf

        self.net, self.T, self.B = _models().parts(model, block_size), block_size, batch
        self.vocab_size = self.net.vocab_size
        ids = tf.TensorSpec((batch, block_size), tf.int32)
        self._prefill = tf.function(self._prefill_impl, input_signature=[ids, tf.TensorSpec((), tf.int32)])
        cache = tf.TensorSpec(tuple(self.net.empty_cache(batch).shape), tf.float32)
        # The single step is not jit-compiled: called once per token from Python, an XLA
        # step took about 1 s per call on the CPU (nano, batch 1, 2026-11-28) against 3.5 ms.
        self._single = tf.function(
            self._step_impl,
            input_signature=[tf.TensorSpec((batch,), tf.int32), tf.TensorSpec((), tf.int32), cache],
        )
        self._compile_loop(jit)

    def _prefill_impl(self, ids, n):
        """A pass over (B, T) ids; returns (logits at position n-1 (B, V), the cache)."""
        logits, cache = self.net.call_with_cache(ids, self.net.empty_cache(self.B), 0)
        return logits[:, n - 1], cache

    def _step_impl(self, token, pos, cache):
        """One new token per row at position ``pos``; returns (logits (B, V), the cache)."""
        logits, cache = self.net.call_with_cache(token[:, None], cache, pos)
        return logits[:, 0], cache

    def _begin(self, carry: _Carry) -> np.ndarray:
        """(Re)build the cache from the window in one pass; returns the next logits."""
        carry.window = [row[-self.T :] for row in carry.window]
        n = len(carry.window[0])
        ids = np.zeros((self.B, self.T), dtype=np.int32)
        ids[:, :n] = np.array(carry.window, dtype=np.int32)
        logits, carry.state = self._prefill(ids, np.int32(n))
        return logits.numpy()

    def _feed(self, carry: _Carry, tokens: list[int]) -> np.ndarray:
        for row, t in zip(carry.window, tokens, strict=True):
            row.append(t)
        if len(carry.window[0]) > self.T:  # the window is full: slide it and rebuild the cache
            carry.window = [row[-(self.T // 2) :] for row in carry.window]
            return self._begin(carry)
        pos = np.int32(len(carry.window[0]) - 1)
        logits, carry.state = self._single(np.asarray(tokens, dtype=np.int32), pos, carry.state)
        return logits.numpy()

    def _room(self, carry: _Carry) -> int:
        return self.T - len(carry.window[0])

    def _pos(self, carry: _Carry):
        return _tf_int(len(carry.window[0]))

    def _advance(self, carry: _Carry, fed, tokens) -> None:
        """The loop fed ``fed``, then all but the last of ``tokens`` (which is fed next)."""
        for b, row in enumerate(carry.window):
            row.append(int(fed[b]))
            row.extend(int(t) for t in tokens[:-1, b])


class RNNDecoder(_Decoder):
    """State-carrying decoding for seed-lstm and the GRU, through the model's own incremental
    call (:meth:`lmcore.nn.models.RNNParts.call_with_cache`): one step per token."""

    def __init__(self, model, batch: int = 1, jit: bool = True):
        import tensorflow as tf

        self.net, self.B = _models().parts(model), batch
        self.vocab_size = self.net.vocab_size
        self._single = tf.function(lambda token, state: self._step_impl(token, 0, state))
        self._compile_loop(jit)

    def _step_impl(self, token, pos, state):
        logits, state = self.net.call_with_cache(token[:, None], state)
        return logits[:, 0], state  # (B, V)

    def _begin(self, carry: _Carry) -> np.ndarray:
        carry.state = self.net.empty_cache(self.B)
        ids = np.array(carry.window, dtype=np.int32)  # (B, n)
        carry.window = []  # the state holds the text; no window to keep
        for t in range(ids.shape[1]):
            logits, carry.state = self._single(ids[:, t], carry.state)
        return logits.numpy()

    def _feed(self, carry: _Carry, tokens: list[int]) -> np.ndarray:
        logits, carry.state = self._single(np.asarray(tokens, dtype=np.int32), carry.state)
        return logits.numpy()

    def _room(self, carry: _Carry) -> int:
        return MAX_LENGTH  # the state never fills up

    def _pos(self, carry: _Carry):
        return _tf_int(0)

    def _advance(self, carry: _Carry, fed, tokens) -> None:
        pass


def _tf_int(value: int):
    import tensorflow as tf

    return tf.constant(value, tf.int32)


def make_decoder(model, config, batch: int = 1, jit: bool = True):
    """The incremental decoder for a model built from ``config`` (the run's model config)."""
    if config.family == "gpt":
        return GPTDecoder(model, config.block_size, batch, jit)
    return RNNDecoder(model, batch, jit)


class Candidate(NamedTuple):
    token_id: int
    raw_prob: float  # under the model's plain softmax
    prob: float  # after the repetition penalty, temperature, top-k and top-p (0 = filtered out)

    @property
    def kept(self) -> bool:
        return self.prob > 0


@dataclass
class Step:
    """One generated token and why it was chosen."""

    token_id: int
    text: str
    prob: float  # its probability under the filtered distribution it was drawn from
    raw_prob: float  # its probability under the model's plain softmax
    candidates: list[Candidate] = field(default_factory=list)  # the likeliest first

    @property
    def surprisal_bits(self) -> float:
        """-log2 of its probability under the model: how surprising the model found it."""
        return -math.log2(max(self.raw_prob, 1e-300))


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
    logits_fn: LogitsFn, tokenizer, prompt: str, length: int, opts: SamplingOptions = DEFAULTS
) -> Iterator[Step]:
    """Yield up to ``length`` generated tokens one at a time (fewer if a stop string appears)."""
    opts.check()
    ids, _ = prompt_ids(tokenizer, prompt)
    new: list[int] = []
    for token, (prob, raw, top_ids, top_raw, top_prob) in logits_fn.decoder(1).sample([ids], length, opts):
        nxt = int(token[0])
        new.append(nxt)
        candidates = [
            Candidate(int(t), float(r), float(p))
            for t, r, p in zip(top_ids[0], top_raw[0], top_prob[0], strict=True)
        ]
        yield Step(nxt, tokenizer.token(nxt), float(prob[0]), float(raw[0]), candidates)
        # A stop string that appears now ends in this token, so it lies within the last
        # len(stop) tokens (each is at least one character): no need to decode them all.
        if opts.stop and any(s in tokenizer.decode(new[-len(s) :]) for s in opts.stop):
            return


def samples(
    logits_fn: LogitsFn,
    tokenizer,
    prompt: str,
    length: int,
    n: int,
    opts: SamplingOptions = DEFAULTS,
) -> list[str]:
    """``n`` continuations of one prompt, generated together as one batch."""
    opts.check()
    ids, _ = prompt_ids(tokenizer, prompt)
    out = [token for token, _ in logits_fn.decoder(n).sample([ids] * n, length, opts)]  # (length, n)
    return [tokenizer.decode(row) for row in np.array(out).T]


def generate(
    logits_fn: LogitsFn, tokenizer, prompt: str, length: int, opts: SamplingOptions = DEFAULTS
) -> Generation:
    """Generate ``length`` tokens after ``prompt``."""
    if not 1 <= length <= MAX_LENGTH:
        raise LMError(f"length must be between 1 and {MAX_LENGTH}, not {length}")
    opts.check()
    _, notes = prompt_ids(tokenizer, prompt)
    steps = list(stream(logits_fn, tokenizer, prompt, length, opts))
    text = tokenizer.decode([s.token_id for s in steps])
    for stop in opts.stop:  # the text ends before the stop string
        text = text.split(stop, 1)[0] if stop else text
    return Generation(prompt, text, steps, notes)


def attention_maps(logits_fn: LogitsFn, ids: list[int]) -> np.ndarray:
    """The GPT's attention weights for ``ids`` (at most one block): (layers, heads, n, n)."""
    if logits_fn.config.family != "gpt":
        raise LMError("attention weights exist only for the GPT models")
    ids = np.asarray(list(ids)[-logits_fn.block_size :], dtype=np.int32)[None, :]  # (1, n)
    return _models().parts(logits_fn.model).attention_weights(ids)


def embedding_matrix(logits_fn: LogitsFn) -> np.ndarray:
    """The token embedding matrix (V, C) of the loaded model."""
    return _models().embedding_matrix(logits_fn.model)


def warm_up(logits_fn: LogitsFn) -> None:
    """Trace and compile the single-row decoder (XLA takes a few seconds on the CPU)."""
    for _ in logits_fn.decoder(1).sample([[0]], 2, SamplingOptions(0)):
        pass


def load_run(run_dir: Path, which: str = "last", jit: bool = True):
    """(LogitsFn, tokenizer, record) for a run's checkpoint (``last`` or ``best``).

    ``jit=False`` runs the decoding loop without XLA: a long-lived process that loads many
    models should, because TensorFlow keeps each compiled loop for the life of the process
    (about 20 MB per loaded nano model, measured), while without XLA memory stays flat.
    """
    record = runs.read_record(run_dir)
    if record is not None and record.task == "classify":
        raise LMError(f"run {run_dir.name} is a classifier; use: python -m lmcore classify predict")
    if record is None or record.model is None:
        raise LMError(f"run {run_dir.name} has no model settings in its record")
    path = runs.existing_checkpoint(run_dir, which)
    if path is None:
        raise LMError(f"run {run_dir.name} has no checkpoint yet")
    tokenizer = tokenizers.load(run_dir / runs.TOKENIZER)
    model = _models().load_model(path, compile=False)
    return LogitsFn(model, record.model, jit), tokenizer, record
