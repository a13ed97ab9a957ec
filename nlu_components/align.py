"""Align word-piece vectors to word tokens by character spans (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pool_pieces_to_tokens(
    vectors: np.ndarray, offsets: np.ndarray, spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Mean of the piece vectors overlapping each (start, end) token span.

    A token with no overlapping piece (truncated away, or characters the tokenizer dropped)
    gets the mean of all pieces, so every token has a vector.
    """
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    out = np.zeros((len(spans), dim), dtype=np.float32)
    if len(spans) == 0:
        return out
    fallback = vectors.mean(axis=0) if len(vectors) else np.zeros(dim, dtype=np.float32)
    starts, ends = offsets[:, 0], offsets[:, 1]
    for row, (start, end) in enumerate(spans):
        overlap = (starts < end) & (ends > start) & (ends > starts)
        out[row] = vectors[overlap].mean(axis=0) if overlap.any() else fallback
    return out
