"""Align word-piece vectors to word tokens by character spans (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def alignment_matrix(offsets: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """(n_tokens, n_pieces) row-stochastic matrix: token vector = matrix @ piece vectors.

    Each token averages the pieces overlapping its (start, end) span; a token with no
    overlapping piece (truncated away, or characters the tokenizer dropped) averages all
    pieces, so every token has a vector.
    """
    n_pieces = len(offsets)
    if n_pieces == 0 or len(spans) == 0:
        return np.zeros((len(spans), n_pieces), dtype=np.float32)
    starts, ends = offsets[:, 0], offsets[:, 1]
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    overlap = (
        (starts[None, :] < bounds[:, 1:2]) & (ends[None, :] > bounds[:, 0:1]) & (ends > starts)
    )
    overlap[~overlap.any(axis=1)] = True
    matrix = overlap.astype(np.float32)
    matrix /= matrix.sum(axis=1, keepdims=True)
    return matrix


def pool_pieces_to_tokens(
    vectors: np.ndarray, offsets: np.ndarray, spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Mean of the piece vectors overlapping each (start, end) token span (see above)."""
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    if len(spans) == 0 or len(vectors) == 0:
        return np.zeros((len(spans), dim), dtype=np.float32)
    return (alignment_matrix(offsets, spans) @ vectors).astype(np.float32)
