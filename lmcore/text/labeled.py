"""Labeled data for classification: texts with labels, split into training and held-out test examples.

From ``builtin:reviews`` (the generated sentiment set of :mod:`lmcore.text.reviews`, with its own
held-out test split), ``keras:imdb`` (the film reviews Keras downloads, decoded back to text;
needs the internet once) or a CSV file with a text and a label column and any number of
labels (a seeded, stratified fifth held out for testing). Missing columns, empty cells, a
single label or a label with one example are refused with the line numbers. Importing this
module loads no TensorFlow; ``keras:imdb`` imports it when asked for.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmcore import LMError, device, first_line
from lmcore.text import corpus, reviews

TEST_FRACTION = 0.2  # of a CSV, held out for the final scores
SPLIT_SEED = 2026  # the CSV split is the same for every training seed
DATA_SOURCES = ("builtin:reviews", "keras:imdb")
IMDB_EXAMPLES = (2000, 1000)  # train, test reviews taken from Keras' IMDB set


@dataclass
class Labeled:
    """Texts with labels, split into training and held-out test examples."""

    source: str
    train: list[tuple[str, str]]  # (text, label)
    test: list[tuple[str, str]]
    labels: list[str]  # sorted; the classifier's output i is labels[i]
    notes: list[str] = field(default_factory=list)


def _rows_from_csv(data: bytes, name: str, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(text, label) rows of a CSV file, refusing missing columns and empty cells."""
    text, _, _ = corpus.decode_bytes(data, name)
    csv.field_size_limit(corpus.MAX_BYTES)
    try:
        reader = csv.DictReader(io.StringIO(corpus.normalize(text)))
        columns = reader.fieldnames or []
        if not columns:
            raise LMError(f"{name} is empty: it needs a header line and rows")
        missing = [c for c in (text_column, label_column) if c not in columns]
        if missing:
            raise LMError(
                f"{name} has no column {' or '.join(repr(c) for c in missing)}; columns are "
                f"{', '.join(columns)} (choose them with --text-column and --label-column)"
            )
        rows = [(r.get(text_column) or "", r.get(label_column) or "") for r in reader]
    except csv.Error as err:
        raise LMError(f"{name} is not a readable CSV file: {err}") from None
    for column, k in ((text_column, 0), (label_column, 1)):
        empty = [i + 2 for i, row in enumerate(rows) if not row[k].strip()]  # line 1 is the header
        if empty:
            lines = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            raise LMError(f"{name}: empty {column!r} on line(s) {lines}; fill them in or remove them")
    return [(t.strip(), label.strip()) for t, label in rows]


def check_labels(rows: list[tuple[str, str]], name: str) -> list[str]:
    """The sorted labels of ``rows``; refuses a single class or a label with one example."""
    if not rows:
        raise LMError(f"{name} has no rows")
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        raise LMError(f"{name} has only one label ({next(iter(counts))!r}); a classifier needs at least two")
    rare = sorted(k for k, n in counts.items() if n < 2)
    if rare:
        raise LMError(
            f"{name}: label(s) {', '.join(map(repr, rare[:5]))} have a single example; each label needs "
            "at least two (one to train on, one to test)"
        )
    return sorted(counts)


def stratified_split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """(kept, held out): ``fraction`` of each label's rows held out (at least one each)."""
    rng = random.Random(seed)
    kept, held = [], []
    by_label: dict[str, list] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n = min(max(1, round(len(group) * fraction)), len(group) - 1)
        held += group[:n]
        kept += group[n:]
    rng.shuffle(kept)
    rng.shuffle(held)
    return kept, held


def decode_imdb(sequences, word_index: dict, index_from: int = 3) -> list[str]:
    """Keras' IMDB id sequences back to text (ids below ``index_from`` are markers)."""
    words = {i + index_from: w for w, i in word_index.items()}
    return [" ".join(words[i] for i in seq if i in words) for seq in sequences]


def _imdb() -> tuple[list, list]:
    device.import_tensorflow()
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data()
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as err:  # offline: urllib's errors arrive wrapped in Keras' own
        raise LMError(
            "keras:imdb is downloaded by Keras on first use (to ~/.keras/datasets) and that failed "
            f"({first_line(err)}); use builtin:reviews offline"
        ) from None
    rng = np.random.default_rng(SPLIT_SEED)
    out = []
    for x, y, n in ((x_train, y_train, IMDB_EXAMPLES[0]), (x_test, y_test, IMDB_EXAMPLES[1])):
        pick = rng.choice(len(x), size=min(n, len(x)), replace=False)
        texts = decode_imdb([x[i] for i in pick], word_index)
        out.append([(t, ("negative", "positive")[int(y[i])]) for t, i in zip(texts, pick, strict=True)])
    return out[0], out[1]


def load_labeled(source: str, text_column: str = "text", label_column: str = "label") -> Labeled:
    """Labeled data from ``builtin:reviews``, ``keras:imdb`` or a CSV file."""
    if source == "builtin:reviews":
        train, test = reviews.labeled()
        return Labeled(source, train, test, sorted(reviews.LABELS))
    if source == "keras:imdb":
        train, test = _imdb()
        return Labeled(source, train, test, ["negative", "positive"])
    if source.startswith(("builtin:", "keras:")):
        raise LMError(f"unknown labeled data {source!r}; use {', '.join(DATA_SOURCES)} or a CSV file")
    path = Path(source).expanduser()
    if not path.is_file():
        raise LMError(f"no such file: {source}")
    if path.suffix.lower() != ".csv":
        raise LMError(f"{path.name}: labeled data must be a .csv file with a text and a label column")
    if path.stat().st_size > corpus.MAX_BYTES:
        raise LMError(f"{source} is larger than {corpus.MAX_BYTES // 2**20} MB")
    rows = _rows_from_csv(path.read_bytes(), path.name, text_column, label_column)
    labels = check_labels(rows, path.name)
    train, test = stratified_split(rows, TEST_FRACTION, SPLIT_SEED)
    return Labeled(str(path), train, test, labels)
