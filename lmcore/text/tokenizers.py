"""Tokenizers: character-level (the tutorial's choice), word-level, and byte-level BPE.

All three share one interface: ``encode(text) -> np.ndarray[int32]``, ``decode(ids) -> str``,
``vocab_size``, ``token(i)`` for display, ``unknown(text)`` for what ``encode`` would drop
or map to ``<unk>``, and JSON save/load (``to_json``/``from_json``, ``save``/``load``) so a
run carries its tokenizer. BPE is trained by the ``tokenizers`` library (Rust, fast, exact
byte-level round trips), which does this far better than hand-written merges in Python.

This module never imports TensorFlow.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from lmcore import LMError

KINDS = ("char", "word", "bpe")
DEFAULT_VOCAB = {"word": 10_000, "bpe": 512}  # vocabulary sizes when none is asked for (at most)


class CharTokenizer:
    """One id per distinct character of the training text, in code-point order.

    Characters outside the vocabulary are skipped by ``encode`` (the caller can count them
    with ``unknown``): a character model has no ``<unk>`` symbol, so its vocabulary is
    exactly the corpus's character set (65 for Tiny Shakespeare).
    """

    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str, **_) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = self.index
        return np.fromiter((index[c] for c in text if c in index), dtype=np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def token(self, i: int) -> str:
        return self.chars[int(i)]

    def split(self, text: str) -> list[str]:
        return [c for c in text if c in self.index]

    def unknown(self, text: str) -> Counter:
        return Counter(c for c in text if c not in self.index)

    def to_json(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


# Word-level pieces: runs of whitespace, single CJK ideographs (Chinese has no spaces),
# words, and single other symbols (punctuation, emoji). Concatenating them gives the text back.
_WORD_PIECES = re.compile(r"\s+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")


def word_pieces(text: str) -> list[str]:
    """Split text into the word tokenizer's pieces (concatenating them gives the text back)."""
    return _WORD_PIECES.findall(text)


class WordTokenizer:
    """Words, whitespace runs and symbols; the ``max_vocab`` most frequent keep an id.

    Id 0 is ``<unk>``, which every rarer or unseen piece becomes.
    """

    kind = "word"
    UNK = "<unk>"

    def __init__(self, vocab: list[str]):
        if not vocab or vocab[0] != self.UNK:
            vocab = [self.UNK, *[v for v in vocab if v != self.UNK]]
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def train(cls, text: str, vocab_size: int = DEFAULT_VOCAB["word"], **_) -> WordTokenizer:
        counts = Counter(m.group() for m in _WORD_PIECES.finditer(text))  # no list of every piece
        common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(1, vocab_size - 1)]
        return cls([cls.UNK, *[w for w, _ in common]])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def split(self, text: str) -> list[str]:
        return word_pieces(text)

    def encode(self, text: str) -> np.ndarray:
        index = self.index
        return np.fromiter((index.get(m.group(), 0) for m in _WORD_PIECES.finditer(text)), dtype=np.int32)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def token(self, i: int) -> str:
        return self.vocab[int(i)]

    def unknown(self, text: str) -> Counter:
        return Counter(w for w in self.split(text) if w not in self.index)

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab}


PIECE_CHARS = 1 << 18  # BPE works on pieces of about this many characters


def _pieces(text: str, size: int = PIECE_CHARS):
    """``text`` in consecutive pieces of at most ``size`` characters, cut before a space that
    follows a non-space where there is one (where byte-level BPE's pre-tokenizer cuts anyway),
    so that the library never holds a whole 50 MB line, or its encoding, at once."""
    start = 0
    while len(text) - start > size:
        end = text.rfind(" ", start + size // 2, start + size)
        while end > start + size // 2 and text[end - 1].isspace():
            end = text.rfind(" ", start + size // 2, end)
        if end <= start + size // 2:
            end = start + size
        yield text[start:end]
        start = end
    yield text[start:]


class BPETokenizer:
    """Byte-level BPE: any text encodes (no unknowns), and decodes back exactly."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int = DEFAULT_VOCAB["bpe"], **_) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=max(vocab_size, len(alphabet)), initial_alphabet=alphabet, show_progress=False
        )
        # Train on lines (long ones in pieces) so that the Rust trainer can work in parallel
        # and never holds one enormous sequence.
        lines = (piece for line in text.splitlines(keepends=True) for piece in _pieces(line))
        tok.train_from_iterator(lines, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        if len(text) <= PIECE_CHARS:
            return np.asarray(self._tok.encode(text).ids, dtype=np.int32)
        parts, batch = [], []
        for piece in [*_pieces(text), None]:  # a few pieces at a time: bounded memory
            if piece is not None:
                batch.append(piece)
            if batch and (piece is None or len(batch) == 4):
                parts += [np.asarray(e.ids, dtype=np.int32) for e in self._tok.encode_batch(batch)]
                batch = []
        return np.concatenate(parts)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])

    def token(self, i: int) -> str:
        """The token's text (its bytes decoded; a partial UTF-8 sequence shows as U+FFFD)."""
        return self._tok.decode([int(i)])

    def split(self, text: str) -> list[str]:
        return [self.token(i) for i in self.encode(text)]

    def unknown(self, text: str) -> Counter:
        return Counter()

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokenizer": self._tok.to_str()}


def train(kind: str, text: str, vocab_size: int | None = None):
    """Build a tokenizer of ``kind`` (char, word, bpe) from ``text``."""
    classes = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BPETokenizer}
    if kind not in classes:
        raise LMError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")
    kwargs = {"vocab_size": vocab_size} if vocab_size else {}
    return classes[kind].train(text, **kwargs)


def from_json(data: dict):
    kind = data.get("kind")
    if kind == "char":
        return CharTokenizer(data["chars"])
    if kind == "word":
        return WordTokenizer(data["vocab"])
    if kind == "bpe":
        from tokenizers import Tokenizer

        return BPETokenizer(Tokenizer.from_str(data["tokenizer"]))
    raise LMError(f"unknown tokenizer kind {kind!r} in saved tokenizer")


def save(tokenizer, path: str | Path) -> None:
    Path(path).write_text(json.dumps(tokenizer.to_json(), ensure_ascii=False), encoding="utf-8")


def load(path: str | Path):
    return from_json(json.loads(Path(path).read_text(encoding="utf-8")))
