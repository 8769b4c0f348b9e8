"""Cached computations behind the Math page (corpus counts, a run's probabilities and embeddings).

Corpus statistics are shared across sessions with ``st.cache_data``/``st.cache_resource`` keyed by
the source and cleaning options; a run's model is loaded only when a run is chosen, through
``lmcore.generation.decoding``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import fmt, loaders
from lmcore import LMError, runs
from lmcore.explain import embeddings, info
from lmcore.generation import decoding
from lmcore.text import corpus, tokenizers

CorpusKey = tuple  # (source, sorted cleaning items, CSV text column): hashable, for the caches


def corpus_key() -> CorpusKey:
    """The corpus chosen on the Data page (or the default)."""
    state = st.session_state
    clean = tuple(sorted((state.get("corpus_clean") or {}).items()))
    return (state.get("corpus_source") or corpus.DEFAULT_SOURCE, clean, state.get("corpus_text_column"))


def corpus_text(key: CorpusKey) -> str:
    source, clean, column = key
    return loaders.load_source(source, dict(clean), column).text


def corpus_tokens(key: CorpusKey, unit: str) -> list[str]:
    text = corpus_text(key)[:2_000_000]
    return (
        list(text) if unit == "characters" else [t for t in tokenizers.word_pieces(text) if not t.isspace()]
    )


@st.cache_resource(show_spinner="Counting pairs…", max_entries=8)
def bigram_model(key: CorpusKey, unit: str, k: float) -> info.BigramModel:
    return info.BigramModel(corpus_tokens(key, unit), k=k)


@st.cache_data(show_spinner="Counting n-grams…", max_entries=16)
def ngram_curve(key: CorpusKey, orders: int = 7) -> list[float]:
    """Bits per character given 0, 1, ... ``orders - 1`` characters of context."""
    text = corpus_text(key)[:2_000_000]
    return [info.ngram_conditional_entropy(text, order) for order in range(orders)]


def true_entropy_rate(source: str) -> float | None:
    """Bits per character of the chain behind ``builtin:markov``; None for any other corpus."""
    return info.markov_entropy_rate(corpus.markov_chain()[1]) if source == "builtin:markov" else None


def reference_lines(record: runs.RunRecord | None) -> tuple[tuple[str, float], ...]:
    """The run's corpus as the Data and Math pages measure it, in the loss's units (nats per
    character): its unigram and bigram entropies, and the exact entropy rate of ``builtin:markov``.
    Nothing for a classifier, for word or BPE tokens (other units), or for a web address (no
    download to draw a line)."""
    data = record.data if record and record.task == "lm" else None
    if data is None or data.tokenizer != "char" or "://" in data.source:
        return ()
    key = (data.source, tuple(sorted(data.clean.items())), data.text_column)
    try:
        unigram, bigram = ngram_curve(key, 2)
    except (LMError, OSError, ValueError):  # the corpus is gone or too short: the curves without lines
        return ()
    lines = [("unigram entropy", unigram), ("bigram entropy", bigram)]
    if (rate := true_entropy_rate(data.source)) is not None:
        lines.append(("true entropy rate", rate))
    return tuple((label, bits * math.log(2)) for label, bits in lines)


def _loaded(run_path: str):
    ckpt = runs.existing_checkpoint(Path(run_path), "best")
    return loaders.generator(run_path, ckpt.stem, ckpt.stat().st_mtime)


def run_token_probs(run_path: str, sentence: str) -> np.ndarray:
    """P(token_i | tokens before it) under the run's model (its best checkpoint)."""
    logits_fn, tok, _ = _loaded(run_path)
    ids = [int(i) for i in tok.encode(sentence)]
    return decoding.token_probs(logits_fn, ids) if len(ids) >= 2 else np.array([])


def run_bits_per_char(run_path: str) -> float:
    """The run's best validation loss in bits per character (tokens/char converts other tokenizers)."""
    run_dir = Path(run_path)
    data = runs.read_record(run_dir).data
    bits_per_token = runs.read_status(run_dir)["best_val_loss"] / math.log(2)
    if data.tokenizer == "char":
        return bits_per_token
    saved = run_dir / runs.CORPUS
    chars = (
        len(saved.read_text(encoding="utf-8"))
        if saved.is_file()
        else len(corpus_text((data.source, tuple(sorted(data.clean.items())), data.text_column)))
    )
    return bits_per_token * (data.train_tokens + data.val_tokens) / chars


def run_embeddings(run_path: str) -> tuple[np.ndarray, list[str]]:
    """(embedding matrix (V, C), token names) of a run's model, at most the 300 first tokens."""
    logits_fn, tok, _ = _loaded(run_path)
    vectors = decoding.embedding_matrix(logits_fn)[:300]
    return vectors, [tok.token(i) for i in range(len(vectors))]


def neighbours(vectors, names, query: int, k: int = 8) -> list[tuple[str, float]]:
    found = embeddings.cosine_neighbours(vectors, vectors[query], k, exclude=(query,))
    return [(fmt.show_token(names[i]), round(s, 4)) for i, s in found]


def analogy(vectors, names, a: int, b: int, c: int) -> list[tuple[str, float]]:
    return [(fmt.show_token(names[i]), round(s, 4)) for i, s in embeddings.analogy(vectors, a, b, c)]
