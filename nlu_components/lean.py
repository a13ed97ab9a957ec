"""A lean forward pass of a BERT-shaped encoder for one text at a time (pure torch).

For a ten-token message the transformers call stack (modules, masks, padding, output objects)
costs about as much as the arithmetic. A live message is encoded alone, so this module runs the
same weights through a short functional forward pass: fused Q/K/V, no padding, no masks. Where
the CPU has native bfloat16 matrix units (AMX / AVX512-BF16) the weights may also be cast to
bfloat16, which halves the memory the matrix products stream.

Two more things make the pass about 30 % faster than a plain functional one (p50 5.4 → 3.8 ms
over StackFAQ questions on one thread here; `scripts/lean_ab.py`):

* the weight matrices are pre-packed once into oneDNN's blocked layout
  (`torch.ops.mkldnn._reorder_linear_weight`, what PyTorch's own inference freezing uses), so a
  product no longer re-lays out its weights on every call; the bfloat16 results are bit-equal to
  `F.linear`'s, and the first feed-forward product applies GELU in the same kernel;
* attention runs on 4-D (batch, heads, pieces, head size) tensors, the shape PyTorch's fused
  CPU attention kernel takes (on 3-D tensors it falls back to the unfused reference kernel).

Where the packed kernels are missing (a PyTorch built without oneDNN) the plain products are
used; either way the result must pass the agreement check below.

A lean path is only ever used after `pick_fast_path` has checked it against the reference
encoder on probe sentences (pooled vectors within cosine `MIN_AGREEMENT`, per-piece vectors
within `MIN_TOKEN_AGREEMENT`); any model that is not BERT-shaped, or a lean
path that disagrees, falls back to the reference encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlu_components.encoder import TokenEncoding

logger = logging.getLogger(__name__)

#: Cosine a lean path's pooled vectors (sentence and per-layer) must reach with the reference.
MIN_AGREEMENT = 0.999
#: Cosine each word piece's vector must reach with the reference.
MIN_TOKEN_AGREEMENT = 0.99
PROBES = (
    "my card still hasn't arrived",
    "How do I change the PIN of my debit card before travelling abroad next week?",
    "send 50 euros to Anna tomorrow",
    "x",
)

#: (text, layers) → the encoding of one text, as `SentenceEncoder.encode_tokens` makes it.
SingleForward = Callable[[str, Sequence[int]], TokenEncoding]


def has_fast_bf16() -> bool:
    """True on CPUs with native bfloat16 matrix instructions (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def lean_forwards(encoder: Any, packed: bool = True) -> list[tuple[str, SingleForward]]:
    """Functional forward passes over a BERT encoder's weights: fp32, and bf16 if the CPU has it
    (and the encoder's `precision` is not `float32`). `packed=False` uses the plain products
    and 3-D attention (for comparisons).

    Raises:
        ValueError: the model is not a BERT encoder with absolute positions and GELU.
    """
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
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the lean path needs a fast tokenizer (character offsets)")
    embeddings = model.embeddings
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    head_dim = hidden // heads

    def layer_weights(dtype: Any, pack: Callable[[Any], Any]) -> list[tuple[Any, ...]]:
        """Each layer's weights in `dtype`, its four matrices passed through `pack`."""

        def cast(t: Any) -> Any:
            return t.detach().to(dtype).contiguous()

        out = []
        for layer in model.encoder.layer:
            attention = layer.attention.self
            qkv_w = torch.cat(
                [attention.query.weight, attention.key.weight, attention.value.weight]
            )
            qkv_b = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
            post, inner, output = layer.attention.output, layer.intermediate, layer.output
            out.append(
                (
                    pack(cast(qkv_w)), cast(qkv_b),
                    pack(cast(post.dense.weight)), cast(post.dense.bias),
                    cast(post.LayerNorm.weight), cast(post.LayerNorm.bias), post.LayerNorm.eps,
                    pack(cast(inner.dense.weight)), cast(inner.dense.bias),
                    pack(cast(output.dense.weight)), cast(output.dense.bias),
                    cast(output.LayerNorm.weight), cast(output.LayerNorm.bias),
                    output.LayerNorm.eps,
                )
            )  # fmt: skip
        return out

    word = embeddings.word_embeddings.weight.detach()
    position = embeddings.position_embeddings.weight.detach()
    token_type = embeddings.token_type_embeddings.weight.detach()[0]
    norm = embeddings.LayerNorm

    def unit(x: Any) -> Any:
        return x / x.norm().clamp_min(1e-9)

    def make(dtype: Any) -> SingleForward:
        linear, linear_gelu, pack = _products(dtype, hidden) if packed else _plain()
        attention = _attention_4d if packed else _attention_3d
        layers = layer_weights(dtype, pack)

        def forward(text: str, pooled_layers: Sequence[int] = ()) -> TokenEncoding:
            batch = tokenizer(
                text if text.strip() else ".",
                truncation=True,
                max_length=max_length,
                return_attention_mask=False,
                return_token_type_ids=False,
                return_offsets_mapping=True,
            )
            ids = batch["input_ids"]
            n = len(ids)
            wanted = set(pooled_layers)
            pools: dict[int, Any] = {}
            with torch.inference_mode():
                h = word[torch.tensor(ids)] + position[:n] + token_type
                h = F.layer_norm(h, (hidden,), norm.weight, norm.bias, norm.eps)
                if 0 in wanted:
                    pools[0] = unit(h.mean(dim=0))
                h = h.to(dtype)
                for number, weights in enumerate(layers, start=1):
                    qkv_w, qkv_b, o_w, o_b, g1, b1, e1, i_w, i_b, d_w, d_b, g2, b2, e2 = weights
                    qkv = linear(h, qkv_w, qkv_b).view(n, 3, heads, head_dim)
                    context = attention(qkv.permute(1, 2, 0, 3))  # (heads, n, head_dim)
                    context = context.permute(1, 0, 2).reshape(n, hidden)
                    h = F.layer_norm(linear(context, o_w, o_b) + h, (hidden,), g1, b1, e1)
                    inner = linear(linear_gelu(h, i_w, i_b), d_w, d_b)
                    h = F.layer_norm(inner + h, (hidden,), g2, b2, e2)
                    if number in wanted:
                        pools[number] = unit(h.float().mean(dim=0))
                last = h.float()
                sentence = unit(last.mean(dim=0)).numpy()
                vectors = last.numpy()
            keep = slice(1, max(1, n - 1))  # drop [CLS] and [SEP]
            return TokenEncoding(
                vectors=np.ascontiguousarray(vectors[keep], dtype=np.float32),
                offsets=np.asarray(batch["offset_mapping"], dtype=np.int64).reshape(-1, 2)[keep],
                sentence=sentence.astype(np.float32),
                layers=(
                    np.concatenate([pools[i].numpy() for i in pooled_layers]).astype(np.float32)
                    if pooled_layers
                    else None
                ),
            )

        return forward

    forwards = [("fp32", make(torch.float32))]
    if has_fast_bf16() and getattr(encoder, "precision", "auto") != "float32":
        forwards.append(("bf16", make(torch.bfloat16)))
    return forwards


Product = Callable[[Any, Any, Any], Any]


def _attention_3d(qkv: Any) -> Any:
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])


def _attention_4d(qkv: Any) -> Any:
    """Attention over (3, heads, n, head_dim) q/k/v given to the kernel as a batch of one."""
    import torch.nn.functional as F

    qkv = qkv.unsqueeze(1)
    return F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])[0]


def _plain() -> tuple[Product, Product, Callable[[Any], Any]]:
    import torch.nn.functional as F

    def linear_gelu(x: Any, w: Any, b: Any) -> Any:
        return F.gelu(F.linear(x, w, b))

    return F.linear, linear_gelu, lambda w: w


def _products(dtype: Any, hidden: int) -> tuple[Product, Product, Callable[[Any], Any]]:
    """(linear, linear followed by GELU, weight packer) for `dtype`: oneDNN's pre-packed
    kernels where this PyTorch has them and they run here, else the plain functional ones."""
    import torch
    import torch.nn.functional as F

    plain = _plain()
    try:
        reorder = torch.ops.mkldnn._reorder_linear_weight
        pointwise = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return plain

    def pack(w: Any) -> Any:
        return reorder(w, 16)  # 16: the typical number of pieces, a blocking hint only

    def linear(x: Any, w: Any, b: Any) -> Any:
        return pointwise(x, w, b, "none", [], "")

    def linear_gelu(x: Any, w: Any, b: Any) -> Any:
        return pointwise(x, w, b, "gelu", [], "none")

    try:  # a trial product: some builds list the ops but cannot run them for this dtype
        with torch.inference_mode():
            w = torch.ones(4, hidden, dtype=dtype)
            x = torch.ones(3, hidden, dtype=dtype)
            b = torch.zeros(4, dtype=dtype)
            got = linear_gelu(x, pack(w), b)
            if not torch.allclose(got.float(), F.gelu(F.linear(x, w, b)).float(), rtol=1e-2):
                return plain
    except (RuntimeError, TypeError, NotImplementedError) as e:
        logger.info("encoder: no pre-packed %s products (%s)", dtype, e)
        return plain
    return linear, linear_gelu, pack


def _agreement(a: TokenEncoding, b: TokenEncoding, block: int) -> tuple[float, float]:
    """(lowest pooled cosine, lowest per-piece cosine) between two encodings of one text."""
    pooled = [float(a.sentence @ b.sentence)]
    if a.layers is not None and b.layers is not None:
        if a.layers.shape != b.layers.shape:
            return -1.0, -1.0
        for start in range(0, len(a.layers), block):
            pooled.append(float(a.layers[start : start + block] @ b.layers[start : start + block]))
    if a.vectors.shape != b.vectors.shape or not np.array_equal(a.offsets, b.offsets):
        return min(pooled), -1.0
    if not len(a.vectors):
        return min(pooled), 1.0
    norms = np.linalg.norm(a.vectors, axis=1) * np.linalg.norm(b.vectors, axis=1)
    tokens = np.sum(a.vectors * b.vectors, axis=1) / np.clip(norms, 1e-9, None)
    return min(pooled), float(tokens.min())


def pick_fast_path(
    encoder: Any, reference: Callable[[list[str], Sequence[int]], list[TokenEncoding]]
) -> tuple[SingleForward | None, str]:
    """The lean forward pass to use (bf16 over fp32) if it agrees with `reference`.

    Returns (None, "reference") when no lean path agrees.

    `reference(texts, layers)` is the encoder's own batched encoding of the probe sentences.
    """
    try:
        candidates = lean_forwards(encoder)
    except (AttributeError, TypeError, ValueError, ImportError) as e:
        logger.info("encoder: no lean single-text path for this model (%s)", e)
        return None, "reference"
    count = int(encoder.model.config.num_hidden_layers)
    layers = tuple(range(count + 1))
    expected = reference(list(PROBES), layers)
    block = int(encoder.dim)
    best: tuple[SingleForward, str] | None = None
    for name, forward in candidates:
        try:
            got = [forward(text, layers) for text in PROBES]
        except RuntimeError as e:  # e.g. a dtype the CPU kernels do not support
            logger.info("encoder: %s lean path unavailable (%s)", name, e)
            continue
        scores = [_agreement(a, b, block) for a, b in zip(got, expected)]
        pooled = min(s[0] for s in scores)
        tokens = min(s[1] for s in scores)
        if pooled < MIN_AGREEMENT or tokens < MIN_TOKEN_AGREEMENT:
            logger.info(
                "encoder: %s lean path disagrees (pooled cos %.6f, piece cos %.6f)",
                name,
                pooled,
                tokens,
            )
            continue
        # prefer the later candidate (bf16, offered only on CPUs with native bfloat16
        # units, where it is reliably faster): a fixed rule, not a timing, so a restarted
        # server encodes exactly as before
        best = (forward, name)
    if best is None:
        return None, "reference"
    logger.info("encoder: single messages use the lean %s forward pass", best[1])
    return best
