"""Sentence vectors for the knowledge base: the NLU's encoder, with a lean path for one query.

Articles are encoded in batches with the shared `SentenceEncoder` (`nlu_components.encoder`),
exactly as the NLU encodes. A single customer question is latency-critical (the whole search
has a 10 ms budget) and the transformers call stack costs more than the arithmetic for a
ten-token input, so `QueryEncoder` runs the same BERT weights through a short functional
forward pass (fused Q/K/V, no padding, no masks). It is checked against the reference encoder
when built and used only if it agrees (cosine >= 0.999 on probe sentences); where the CPU has fast bfloat16
(AMX/AVX512-BF16) the weights may be cast to bfloat16 when that is faster and still agrees.
Any model that is not BERT-shaped simply uses the reference encoder.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

#: Agreement a fast path must reach with the reference encoder to be used.
MIN_AGREEMENT = 0.999
_PROBES = (
    "my card still hasn't arrived",
    "How do I change the PIN of my debit card before travelling abroad next week?",
    "x",
)


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
    """The fastest lean forward pass that agrees with `encoder`, or (None, "reference")."""
    try:
        candidates = _lean_bert_forwards(encoder)
    except (AttributeError, TypeError, ValueError, ImportError) as e:
        logger.info("knowledge base: no fast query path for this encoder (%s)", e)
        return None, "reference"
    if not candidates:
        return None, "reference"
    reference = np.asarray(encoder.encode(list(_PROBES)), dtype=np.float32)
    best: tuple[float, Callable[[str], np.ndarray], str] | None = None
    for name, forward in candidates:
        try:
            vectors = np.stack([forward(text) for text in _PROBES])
        except RuntimeError as e:  # e.g. a dtype the CPU kernels do not support
            logger.info("knowledge base: %s query path unavailable (%s)", name, e)
            continue
        agreement = float(np.min(np.sum(vectors * reference, axis=1)))
        if agreement < MIN_AGREEMENT:
            logger.info("knowledge base: %s query path disagrees (cos %.6f)", name, agreement)
            continue
        started = time.perf_counter()
        for _ in range(3):
            for text in _PROBES[:2]:
                forward(text)
        elapsed = time.perf_counter() - started
        if best is None or elapsed < best[0]:
            best = (elapsed, forward, name)
    if best is None:
        return None, "reference"
    return best[1], best[2]


def _lean_bert_forwards(encoder: Any) -> list[tuple[str, Callable[[str], np.ndarray]]]:
    """Functional forward passes over a BERT encoder's weights (fp32, and bf16 if usable)."""
    import torch
    import torch.nn.functional as F

    model = encoder.model
    tokenizer = encoder.tokenizer
    max_length = int(encoder.max_length)
    config = model.config
    if getattr(config, "model_type", "") != "bert" or config.hidden_act not in ("gelu",):
        raise ValueError(f"model type {getattr(config, 'model_type', '?')} is not a BERT encoder")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    embeddings = model.embeddings
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    head_dim = hidden // heads

    def layer_weights(dtype: Any) -> list[tuple[Any, ...]]:
        out = []
        for layer in model.encoder.layer:
            attention = layer.attention.self
            qkv_w = torch.cat(
                [attention.query.weight, attention.key.weight, attention.value.weight]
            )
            qkv_b = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
            post = layer.attention.output
            out.append(
                tuple(
                    t.detach().to(dtype).contiguous() if torch.is_tensor(t) else t
                    for t in (
                        qkv_w, qkv_b,
                        post.dense.weight, post.dense.bias,
                        post.LayerNorm.weight, post.LayerNorm.bias, post.LayerNorm.eps,
                        layer.intermediate.dense.weight, layer.intermediate.dense.bias,
                        layer.output.dense.weight, layer.output.dense.bias,
                        layer.output.LayerNorm.weight, layer.output.LayerNorm.bias,
                        layer.output.LayerNorm.eps,
                    )
                )
            )  # fmt: skip
        return out

    word = embeddings.word_embeddings.weight.detach()
    position = embeddings.position_embeddings.weight.detach()
    token_type = embeddings.token_type_embeddings.weight.detach()[0]
    norm = embeddings.LayerNorm

    def make(dtype: Any) -> Callable[[str], np.ndarray]:
        layers = layer_weights(dtype)

        def forward(text: str) -> np.ndarray:
            ids = tokenizer(
                text if text.strip() else ".",
                truncation=True,
                max_length=max_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            n = len(ids)
            with torch.inference_mode():
                index = torch.tensor(ids)
                h = word[index] + position[:n] + token_type
                h = F.layer_norm(h, (hidden,), norm.weight, norm.bias, norm.eps).to(dtype)
                for qkv_w, qkv_b, o_w, o_b, g1, b1, e1, i_w, i_b, d_w, d_b, g2, b2, e2 in layers:
                    qkv = F.linear(h, qkv_w, qkv_b).view(n, 3, heads, head_dim).permute(1, 2, 0, 3)
                    context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
                    context = context.permute(1, 0, 2).reshape(n, hidden)
                    h = F.layer_norm(F.linear(context, o_w, o_b) + h, (hidden,), g1, b1, e1)
                    inner = F.linear(F.gelu(F.linear(h, i_w, i_b)), d_w, d_b)
                    h = F.layer_norm(inner + h, (hidden,), g2, b2, e2)
                pooled = h.float().mean(dim=0)
                pooled = pooled / pooled.norm().clamp_min(1e-9)
            return pooled.numpy().astype(np.float32)

        return forward

    forwards = [("fp32", make(torch.float32))]
    if _has_fast_bf16():
        forwards.append(("bf16", make(torch.bfloat16)))
    return forwards


def _has_fast_bf16() -> bool:
    """True on CPUs with native bfloat16 matrix instructions (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags
