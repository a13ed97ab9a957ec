"""A deterministic stand-in encoder for fast knowledge-base tests (the real MiniLM is used in
the slow action-server tests)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


class HashingEncoder:
    """Bag-of-words vectors through the hashing trick: texts sharing words are close."""

    def __init__(self, dim: int = 64, key: str = "hashing-test:64") -> None:
        self.dim = dim
        self.key = key
        self.calls = 0
        self.texts_encoded = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim
                out[row, bucket] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else np.eye(self.dim, dtype=np.float32)[0]
        return out
