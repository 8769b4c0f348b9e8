"""What the pages share between sessions, cached: corpora, tokenizers, token ids, loaded models.

Everything is keyed by what determines it (a source and its cleaning, a text's hash, a
checkpoint and its time), so nothing one visitor does changes what another sees. Nothing
here imports TensorFlow at import time: a model's loader reaches it only when it is called.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import streamlit as st

from lmcore.explain import info
from lmcore.generation import decoding
from lmcore.text import corpus, tokenizers


@st.cache_data(show_spinner="Loading the corpus…", max_entries=16)
def load_source(source: str, options: dict, text_column: str | None = None) -> corpus.Corpus:
    return corpus.load(source, text_column=text_column, options=corpus.CleanOptions(**options))


@st.cache_data(show_spinner="Decoding the upload…", max_entries=8)
def load_upload(data: bytes, name: str, options: dict, text_column: str | None = None) -> corpus.Corpus:
    return corpus.load_bytes(data, name, text_column=text_column, options=corpus.CleanOptions(**options))


@st.cache_resource(show_spinner="Training the tokenizer…", max_entries=24)
def tokenizer_for(kind: str, text_sha: str, _text: str):
    """A tokenizer trained on a corpus, shared by all sessions (keyed by the text's hash)."""
    return tokenizers.train(kind, _text)


@st.cache_resource(show_spinner="Tokenizing…", max_entries=24)
def token_ids(kind: str, text_sha: str, _text: str):
    """The whole corpus encoded by ``kind``'s tokenizer (shared, keyed by the text's hash)."""
    return tokenizer_for(kind, text_sha, _text).encode(_text)


@st.cache_data(show_spinner=False, max_entries=16)
def distinct_chars(text: str) -> str:
    """The characters of ``text``, once (the char tokenizer's vocabulary)."""
    return "".join(sorted(set(text)))


def entropy_bits(text: str) -> float:
    return info.unigram_entropy(text) if text else 0.0


def _load_generator(run_dir: str, which: str):
    # No XLA in the server: its compiled code would stay in memory after the model is evicted.
    loaded = decoding.load_run(Path(run_dir), which, jit=False)
    decoding.warm_up(loaded[0])  # trace the decoder now, not at the first token
    return loaded


PRELOADS_KEPT = 2  # checkpoints loading (or loaded, not yet asked for) ahead of the click
_preloads: dict[tuple, Future] = {}
_preloads_lock = threading.Lock()
_preloader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmlab-preload")


def preload_generator(run_dir: str, which: str, mtime: float) -> None:
    """Start loading the checkpoint the Generate page shows, in one background thread, so
    that "Generate" finds it loaded (importing TensorFlow and tracing the decoder take
    seconds). One load at a time; only the newest few are kept, and an older one not begun
    is cancelled. :func:`generator` takes the load over once it is asked for."""
    key = (run_dir, which, mtime)
    with _preloads_lock:
        if key in _preloads:
            return
        _preloads[key] = _preloader.submit(_load_generator, run_dir, which)
        while len(_preloads) > PRELOADS_KEPT:
            _preloads.pop(next(iter(_preloads))).cancel()  # a no-op for one already loading


def _take_preload(key: tuple):
    with _preloads_lock:
        future = _preloads.pop(key, None)
    return future.result() if future is not None and not future.cancelled() else None


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def generator(run_dir: str, which: str, mtime: float):
    """(LogitsFn, tokenizer, config) for a checkpoint; ``mtime`` makes a newer checkpoint reload.
    It waits for a preload of the same checkpoint (its errors come through as its own)."""
    return _take_preload((run_dir, which, mtime)) or _load_generator(run_dir, which)


def write(logits_fn, tok, prompt: str, length: int, opts: decoding.SamplingOptions, shown=None) -> dict:
    """One continuation of ``prompt``: its text (cut at a stop string, as the command line's
    is), its steps and its rate; ``shown(text so far)`` is called as it grows."""
    steps, started = [], time.perf_counter()
    for step in decoding.stream(logits_fn, tok, prompt, length, opts):
        steps.append(step)
        if shown is not None and len(steps) % 8 == 0:
            shown(tok.decode([s.token_id for s in steps]))
    elapsed = time.perf_counter() - started
    text = tok.decode([s.token_id for s in steps])
    for s in opts.stop:
        text = text.split(s, 1)[0]
    return {"text": text, "steps": steps, "rate": len(steps) / max(elapsed, 1e-9)}


@st.cache_data(show_spinner="Writing the first text…", max_entries=32)
def shared_text(run_dir: str, which: str, mtime: float, prompt: str, length: int, opts: dict) -> dict:
    """:func:`write` once for everyone who asks for the same continuation (the same checkpoint,
    prompt and settings; the page always sets a seed, so it is the same text): a class sent
    to Generate by one quick demo computes its first text once, and Streamlit's cache makes
    the others wait for it rather than compute it again."""
    logits_fn, tok, _ = generator(run_dir, which, mtime)
    return write(logits_fn, tok, prompt, length, decoding.SamplingOptions(**opts))
