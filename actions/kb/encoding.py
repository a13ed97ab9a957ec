"""Sentence vectors for the knowledge base: the NLU's encoder, with a lean path for one query.

Articles are encoded in batches with the shared `SentenceEncoder` (`nlu_components.encoder`),
exactly as the NLU encodes. A single customer question is latency-critical (the whole search
has a 10 ms budget) and the transformers call stack costs more than the arithmetic for a
ten-token input, so `QueryEncoder` uses the encoder's lean single-text forward pass
(`nlu_components.lean`: fused Q/K/V, no padding, no masks, bfloat16 where the CPU has fast
bfloat16 units), the same path the NLU uses for live messages. It is checked against the
reference encoder when picked and used only if it agrees (cosine >= 0.999 on probe sentences).
Any other encoder simply uses its own `encode`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)


@runtime_checkable
class TextEncoder(Protocol):
    """What the knowledge base needs from a sentence encoder."""

    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dim)."""
        ...


def encoder_key(encoder: Any) -> str:
    """Identifies the vectors an encoder makes; stored vectors with another key are recomputed."""
    explicit = getattr(encoder, "key", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    path = getattr(encoder, "path", None)
    if path is not None:
        path = Path(path)
        digest = ""
        config = path / "config.json"
        if config.is_file():
            digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
        max_length = getattr(encoder, "max_length", "")
        return f"{path.parent.name}/{path.name}:{encoder.dim}:{max_length}:{digest}"[:200]
    return f"{type(encoder).__module__}.{type(encoder).__qualname__}:{encoder.dim}"


class QueryEncoder:
    """Encodes one question at a time, as fast as the hardware allows."""

    def __init__(self, encoder: TextEncoder, allow_fast: bool = True) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self._lock = threading.Lock()
        self._fast: Callable[[str], np.ndarray] | None = None
        self.path_name = "reference"
        if allow_fast:
            self._fast, self.path_name = _pick_fast_path(encoder)

    def encode(self, text: str) -> np.ndarray:
        """Unit vector of `text`, shape (dim,)."""
        if self._fast is not None:
            with self._lock:
                return self._fast(text)
        return np.asarray(self.encoder.encode([text])[0], dtype=np.float32)


def _pick_fast_path(encoder: Any) -> tuple[Callable[[str], np.ndarray] | None, str]:
    """The encoder's checked lean single-text path (`nlu_components.lean`), if it has one."""
    single_path = getattr(encoder, "single_path", None)
    if not callable(single_path):
        return None, "reference"
    single = single_path()
    if single is None:
        return None, "reference"

    def forward(text: str) -> np.ndarray:
        return single(text, ()).sentence

    return forward, str(getattr(encoder, "single_path_name", "lean"))
