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

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmcore import LMError
from lmcore import tokenizers as tok_mod

MAX_LENGTH = 10_000
TOP_CANDIDATES = 10  # candidates reported with each generated token


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


class LogitsFn:
    """A loaded model's next-token logits, two ways.

    Calling it runs the whole window (the last ``block_size`` tokens, padded on the right to
    one compiled shape): the naive reference. :meth:`decoder` gives the incremental decoder
    (key/value cache or carried state) that generation uses.
    """

    def __init__(self, model, model_config: dict):
        import tensorflow as tf

        self.model, self.config = model, model_config
        self.block_size = model_config["block_size"]
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
            self._decoders[batch] = make_decoder(self.model, self.config, batch)
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


# ---------------------------------------------------------------------------- incremental decoding


class GPTDecoder:
    """Key/value-cached decoding for the GPT: each new token attends to stored keys and values.

    The cache holds ``block_size`` positions per layer, (L, B, H, T, D) for keys and values.
    The prompt is encoded in one fixed-shape pass (padded on the right: causal attention
    ignores the padding); each step then writes one position and attends to those before it.
    Positions are absolute (learned embeddings), so when the window is full it slides by
    rebuilding the cache from the last ``block_size // 2`` tokens: the logits are always
    those of a full forward pass over the current window.
    """

    def __init__(self, model, block_size: int, batch: int = 1):
        import tensorflow as tf

        self.model, self.T, self.B = model, block_size, batch
        self.wte, self.wpe, self.ln_f = (model.get_layer(n) for n in ("wte", "wpe", "ln_f"))
        self.blocks = [layer for layer in model.layers if layer.name.startswith("block_")]
        attn = self.blocks[0].attn
        self.H, self.D = attn.n_head, attn.n_embd // attn.n_head
        ids = tf.TensorSpec((batch, block_size), tf.int32)
        # No XLA here: on the CPU a jit-compiled step took about 1 s per call (measured with
        # nano, batch 1, 2026-11-28) against 3.5 ms without it.
        self._prefill = tf.function(self._prefill_impl, input_signature=[ids, tf.TensorSpec((), tf.int32)])
        cache = tf.TensorSpec((len(self.blocks), batch, self.H, block_size, self.D), tf.float32)
        self._step = tf.function(
            self._step_impl,
            input_signature=[tf.TensorSpec((batch,), tf.int32), tf.TensorSpec((), tf.int32), cache, cache],
        )
        self.window: list[list[int]] = []

    def _heads(self, x):  # (B, n, C) -> (B, H, n, D)
        import tensorflow as tf

        B, n = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, (B, n, self.H, self.D)), (0, 2, 1, 3))

    def _prefill_impl(self, ids, n):
        """Full causal pass over (B, T) ids; returns (logits at position n-1 (B, V), K, V)."""
        import tensorflow as tf

        x = self.wpe(self.wte(ids))  # (B, T, C)
        ks, vs = [], []
        for block in self.blocks:
            h = block.ln1(x)
            q, k, v = tf.split(block.attn.qkv(h), 3, axis=-1)
            ks.append(self._heads(k))
            vs.append(self._heads(v))
            x = x + block.attn(h)
            x = x + block.mlp(block.ln2(x))
        logits = self.wte(self.ln_f(x), reverse=True)  # (B, T, V)
        return logits[:, n - 1], tf.stack(ks), tf.stack(vs)  # (B, V), (L, B, H, T, D) twice

    def _step_impl(self, token, pos, K, V):
        """One new token per row at position ``pos``; returns (logits (B, V), K, V)."""
        import tensorflow as tf

        x = self.wte(token[:, None]) + tf.cast(self.wpe.pos[pos][None, None, :], tf.float32)  # (B, 1, C)
        write = tf.one_hot(pos, self.T)[None, None, :, None]  # (1, 1, T, 1): the slot to fill
        visible = tf.range(self.T) <= pos  # (T,)
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            h = block.ln1(x)
            q, k, v = (self._heads(t) for t in tf.split(block.attn.qkv(h), 3, axis=-1))  # (B, H, 1, D)
            Ki = K[i] * (1 - write) + k * write  # (B, H, T, D)
            Vi = V[i] * (1 - write) + v * write
            att = tf.matmul(q, Ki, transpose_b=True) / math.sqrt(self.D)  # (B, H, 1, T)
            att = tf.nn.softmax(tf.where(visible, att, -1e30), axis=-1)
            y = tf.reshape(tf.transpose(tf.matmul(att, Vi), (0, 2, 1, 3)), (-1, 1, self.H * self.D))
            x = x + block.attn.proj(y)
            x = x + block.mlp(block.ln2(x))
            new_k.append(Ki)
            new_v.append(Vi)
        logits = self.wte(self.ln_f(x), reverse=True)[:, 0]  # (B, V)
        return logits, tf.stack(new_k), tf.stack(new_v)

    def _rebuild(self) -> np.ndarray:
        n = len(self.window[0])
        ids = np.zeros((self.B, self.T), dtype=np.int32)
        ids[:, :n] = np.array(self.window, dtype=np.int32)
        logits, self.K, self.V = self._prefill(ids, np.int32(n))
        return logits.numpy()

    def start(self, prompts: list[list[int]]) -> np.ndarray:
        """Encode one prompt per row (equal lengths); returns next-token logits (B, V)."""
        self.window = [list(p)[-self.T :] for p in prompts]
        return self._rebuild()

    def next(self, tokens) -> np.ndarray:
        """Append one token per row; returns the logits (B, V) that follow it."""
        tokens = [int(t) for t in tokens]
        for row, t in zip(self.window, tokens, strict=True):
            row.append(t)
        if len(self.window[0]) > self.T:  # the window is full: slide it and rebuild the cache
            self.window = [row[-(self.T // 2) :] for row in self.window]
            return self._rebuild()
        pos = np.int32(len(self.window[0]) - 1)
        logits, self.K, self.V = self._step(np.asarray(tokens, dtype=np.int32), pos, self.K, self.V)
        return logits.numpy()


class RNNDecoder:
    """State-carrying decoding for seed-lstm and the GRU: one step per token, as the one-step
    model of TensorFlow's text-generation tutorial does; the state summarizes all the text."""

    def __init__(self, model, batch: int = 1):
        import tensorflow as tf

        self.B = batch
        self.embedding = model.get_layer("embedding")
        self.layers = [layer for layer in model.layers if layer.name.startswith(("lstm_", "gru_"))]
        self.head = model.get_layer("head")
        self._step = tf.function(self._step_impl)
        self.states = None

    def _step_impl(self, token, states):
        x = self.embedding(token)  # (B, E)
        out = []
        for layer, state in zip(self.layers, states, strict=True):
            x, new = layer.cell(x, list(state))
            out.append(tuple(new))
        return self.head(x), tuple(out)  # (B, V)

    def _zero(self):
        import tensorflow as tf

        return tuple(
            tuple(
                tf.zeros((self.B, layer.cell.units)) for _ in range(2 if layer.name.startswith("lstm") else 1)
            )
            for layer in self.layers
        )

    def start(self, prompts: list[list[int]]) -> np.ndarray:
        self.states = self._zero()
        ids = np.array(prompts, dtype=np.int32)  # (B, n)
        for t in range(ids.shape[1]):
            logits, self.states = self._step(ids[:, t], self.states)
        return logits.numpy()

    def next(self, tokens) -> np.ndarray:
        logits, self.states = self._step(np.asarray(tokens, dtype=np.int32), self.states)
        return logits.numpy()


def make_decoder(model, config: dict, batch: int = 1):
    """The incremental decoder for a model built from ``config`` (the run's model config)."""
    if config["family"] == "gpt":
        return GPTDecoder(model, config["block_size"], batch)
    return RNNDecoder(model, batch)


@dataclass
class Step:
    """One generated token and why it was chosen."""

    token_id: int
    text: str
    prob: float  # its probability under the filtered distribution it was drawn from
    raw_prob: float  # its probability under the model's plain softmax
    candidates: list = field(
        default_factory=list
    )  # [(token id, raw prob, kept by the filters)], likeliest first


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
    decoder = logits_fn.decoder(1)
    logits = decoder.start([ids])[0]
    new: list[int] = []
    for i in range(length):
        if i:
            logits = decoder.next([ids[-1]])[0]
        probs = filter_probs(logits, opts, ids)
        nxt = int(np.argmax(probs)) if opts.temperature == 0 else int(rng.choice(len(probs), p=probs))
        ids.append(nxt)
        new.append(nxt)
        raw = softmax(logits)
        top = np.argsort(-raw, kind="stable")[:TOP_CANDIDATES]
        candidates = [(int(t), float(raw[t]), bool(probs[t] > 0)) for t in top]
        yield Step(nxt, tokenizer.token(nxt), float(probs[nxt]), float(raw[nxt]), candidates)
        if opts.stop and any(s in tokenizer.decode(new) for s in opts.stop):
            return


def samples(
    logits_fn: LogitsFn,
    tokenizer,
    prompt: str,
    length: int,
    n: int,
    opts: SamplingOptions = SamplingOptions(),
) -> list[str]:
    """``n`` continuations of one prompt, generated together as one batch."""
    opts.check()
    ids, _ = prompt_ids(tokenizer, prompt)
    rng = np.random.default_rng(opts.seed)
    decoder = logits_fn.decoder(n)
    logits = decoder.start([ids] * n)
    out = np.zeros((n, length), dtype=np.int64)
    for i in range(length):
        if i:
            logits = decoder.next(out[:, i - 1])
        for row in range(n):
            probs = filter_probs(logits[row], opts, [*ids, *out[row, :i]])  # penalty sees each row's own text
            out[row, i] = np.argmax(probs) if opts.temperature == 0 else rng.choice(len(probs), p=probs)
    return [tokenizer.decode(row) for row in out]


def generate(
    logits_fn: LogitsFn, tokenizer, prompt: str, length: int, opts: SamplingOptions = SamplingOptions()
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
    import tensorflow as tf

    if logits_fn.config["family"] != "gpt":
        raise LMError("attention weights exist only for the GPT models")
    model = logits_fn.model
    ids = np.asarray(list(ids)[-logits_fn.block_size :], dtype=np.int32)[None, :]  # (1, n)
    x = model.get_layer("wpe")(model.get_layer("wte")(ids))
    maps = []
    for layer in model.layers:
        if layer.name.startswith("block_"):
            h = layer.ln1(x)
            out, att = layer.attn.attention(h)  # att: (1, H, n, n)
            maps.append(tf.convert_to_tensor(att)[0].numpy())
            x = x + out
            x = x + layer.mlp(layer.ln2(x))
    return np.stack(maps)


def load_run(run_dir: Path, which: str = "last"):
    """(LogitsFn, tokenizer, config) for a run's checkpoint (``last`` or ``best``)."""
    from lmcore import models, runs

    path = runs.existing_checkpoint(run_dir, which)
    if path is None:
        raise LMError(f"run {run_dir.name} has no checkpoint yet")
    config = runs.read_json(run_dir / "config.json")
    tokenizer = tok_mod.load(run_dir / "tokenizer.json")
    model = models.load_model(path, compile=False)
    return LogitsFn(model, config["model"]), tokenizer, config
