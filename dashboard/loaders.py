"""What the pages share between sessions, cached: corpora, tokenizers, token ids, loaded models.

Everything is keyed by what determines it (a source and its cleaning, a text's hash, a
checkpoint and its time), so nothing one visitor does changes what another sees. Nothing
here imports TensorFlow at import time: a model's loader reaches it only when it is called.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lmcore.explain import info
from lmcore.generation import decoding
from lmcore.text import corpus, tokenizers
from lmcore.training import classify


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


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def generator(run_dir: str, which: str, mtime: float):
    """(LogitsFn, tokenizer, config) for a checkpoint; ``mtime`` makes a newer checkpoint reload."""
    # No XLA in the server: its compiled code would stay in memory after the model is evicted.
    loaded = decoding.load_run(Path(run_dir), which, jit=False)
    decoding.warm_up(loaded[0])  # trace the decoder now, under this spinner, not at the first token
    return loaded


@st.cache_resource(show_spinner="Loading the classifier…", max_entries=4)
def classifier(run_dir: str):
    """A trained classifier run, loaded once (this is where TensorFlow gets imported)."""
    return classify.load_classifier(Path(run_dir))
