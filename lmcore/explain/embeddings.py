"""Embedding geometry for the Math page: projection to 2-D, cosine neighbours, vector arithmetic.

NumPy only; the matrix comes from a trained run through :func:`lmcore.nn.models.embedding_matrix`.
"""

from __future__ import annotations

import numpy as np


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components.

    Returns (points (N, 2), fraction of the variance each component explains (2,)).
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    explained = s**2 / max(np.sum(s**2), 1e-300)
    return x @ vt[:2].T, explained[:2]


def cosine_neighbours(
    vectors: np.ndarray, query: np.ndarray, k: int = 8, exclude: tuple[int, ...] = ()
) -> list[tuple[int, float]]:
    """The ``k`` rows most similar to ``query`` by cosine similarity: [(row, similarity)]."""
    v = np.asarray(vectors, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    sims = v @ q / (np.linalg.norm(v, axis=1) * np.linalg.norm(q) + 1e-12)
    sims[list(exclude)] = -np.inf
    order = np.argsort(-sims)[:k]
    return [(int(i), float(sims[i])) for i in order]


def analogy(vectors: np.ndarray, a: int, b: int, c: int, k: int = 5) -> list[tuple[int, float]]:
    """Rows nearest to v[a] - v[b] + v[c] (the tutorial's "king - man + woman"), inputs excluded."""
    v = np.asarray(vectors, dtype=np.float64)
    return cosine_neighbours(v, v[a] - v[b] + v[c], k, exclude=(a, b, c))
