"""The lean single-text forward pass agrees with the batched transformers encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlu_components.encoder import SentenceEncoder, load_encoder
from nlu_components.errors import ComponentConfigError
from nlu_components.lean import (
    MIN_AGREEMENT,
    MIN_TOKEN_AGREEMENT,
    has_fast_bf16,
    lean_forwards,
    pick_fast_path,
)

TEXTS = [
    "I still haven't received my new card",
    "send 50 euros to Anna tomorrow",
    "",
    "   ",
    "🙂🙂🙂",
    "¿Dónde está mi tarjeta de crédito?",
    "\x00\x01 binary \xff junk",
    "why " * 5000,  # far past max_length: truncated the same way
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return load_encoder(None, max_length=64)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_each_lean_forward_agrees_with_the_batched_encoding(encoder: SentenceEncoder) -> None:
    layers = (0, 2, 4, 6)
    reference = encoder.encode_tokens(TEXTS, layers=layers)
    names = [name for name, _ in lean_forwards(encoder)]
    assert names[0] == "fp32" and ("bf16" in names) == has_fast_bf16()
    for name, forward in lean_forwards(encoder):
        for text, expected in zip(TEXTS, reference):
            got = forward(text, layers)
            np.testing.assert_array_equal(got.offsets, expected.offsets)
            assert got.vectors.shape == expected.vectors.shape
            assert got.layers is not None and got.layers.shape == expected.layers.shape
            assert _cos(got.sentence, expected.sentence) >= MIN_AGREEMENT, (name, text[:20])
            for block in range(len(layers)):
                part = slice(block * encoder.dim, (block + 1) * encoder.dim)
                assert _cos(got.layers[part], expected.layers[part]) >= MIN_AGREEMENT
            for a, b in zip(got.vectors, expected.vectors):
                assert _cos(a, b) >= MIN_TOKEN_AGREEMENT


def test_fp32_lean_path_matches_a_float32_encoder_closely() -> None:
    encoder = load_encoder(None, max_length=64, precision="float32")
    assert not encoder.bf16_batches
    assert [name for name, _ in lean_forwards(encoder)] == ["fp32"]
    forward = dict(lean_forwards(encoder))["fp32"]
    for text, expected in zip(TEXTS, encoder.encode_tokens(TEXTS, layers=(2, 4, 6))):
        got = forward(text, (2, 4, 6))  # same arithmetic in another order: nearly bit-equal
        np.testing.assert_allclose(got.layers, expected.layers, atol=1e-4)
        np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-3)


def test_bfloat16_batches_agree_with_float32(encoder: SentenceEncoder) -> None:
    assert encoder.bf16_batches == has_fast_bf16()  # `auto`
    exact = load_encoder(None, max_length=64, precision="float32")
    fast = load_encoder(None, max_length=64, precision="bfloat16")
    for a, b in zip(
        exact.encode_tokens(TEXTS, layers=(2, 4, 6)), fast.encode_tokens(TEXTS, layers=(2, 4, 6))
    ):
        assert a.vectors.dtype == b.vectors.dtype == np.float32
        for block in range(3):
            part = slice(block * 384, (block + 1) * 384)
            assert _cos(a.layers[part], b.layers[part]) >= MIN_AGREEMENT


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ComponentConfigError, match="precision"):
        SentenceEncoder(None, precision="float8")


def test_encode_one_uses_the_checked_path_and_matches_it(encoder: SentenceEncoder) -> None:
    single = encoder.single_path()
    assert single is not None and encoder.single_path_name in {"fp32", "bf16"}
    for text in TEXTS:
        one = encoder.encode_one(text, layers=(2, 4, 6))
        again = single(text, (2, 4, 6))
        np.testing.assert_array_equal(one.layers, again.layers)
        batched = encoder.encode_tokens([text], layers=(2, 4, 6))[0]
        assert _cos(one.layers, batched.layers) >= MIN_AGREEMENT * 3 - 2  # three unit blocks


def test_a_disagreeing_path_is_refused(encoder: SentenceEncoder) -> None:
    # a reference that answers with other vectors than the weights give: every lean path
    # disagrees, so the encoder keeps its own (reference) encoding
    def wrong(texts, layers):  # type: ignore[no-untyped-def]
        out = encoder.encode_tokens(texts, layers=layers)
        return [
            type(e)(
                e.vectors[::-1].copy(),
                e.offsets,
                -e.sentence,
                None if e.layers is None else -e.layers,
            )
            for e in out
        ]

    assert pick_fast_path(encoder, wrong) == (None, "reference")


def test_fine_tuned_copy_gets_its_own_lean_path(encoder: SentenceEncoder) -> None:
    encoder.single_path()
    name = "encoder.layer.5.output.LayerNorm.bias"
    noise = torch.randn(encoder.dim, generator=torch.Generator().manual_seed(0))
    state = {name: encoder.model.state_dict()[name] + noise}
    tuned = encoder.with_state(state)
    text = "how do I top up by card"
    original = encoder.encode_one(text, layers=(6,)).sentence
    changed = tuned.encode_one(text, layers=(6,)).sentence
    reference = tuned.encode_tokens([text], layers=(6,))[0].sentence
    assert _cos(changed, reference) >= MIN_AGREEMENT
    assert _cos(changed, original) < 0.99  # not the old weights' path
    assert torch.equal(tuned.model.state_dict()[name], state[name])


def test_lean_path_can_be_switched_off() -> None:
    encoder = SentenceEncoder(None, max_length=32)
    encoder.allow_lean = False
    assert encoder.single_path() is None and encoder.single_path_name == "reference"
    one = encoder.encode_one("block my card", layers=(6,))
    np.testing.assert_array_equal(
        one.layers, encoder.encode_tokens(["block my card"], layers=(6,))[0].layers
    )


def test_prefetched_encoding_is_collected_and_identical() -> None:
    """The spaCy component starts the forward pass early; the featurizer gets the same vectors."""
    from nlu_components import encoder as encoder_module

    encoder = SentenceEncoder(None, max_length=32)
    expected = {text: encoder.encode_one(text, 1, (2, 4, 6)) for text in TEXTS[:3]}
    encoder_module.prefetch_live(TEXTS[0])  # not enabled yet: nothing starts
    assert not encoder._pending
    encoder.enable_prefetch(1, [2, 4, 6])
    for text in TEXTS[:3]:
        encoder_module.prefetch_live(text)
        encoder_module.prefetch_live(text)  # a duplicate is started once
    assert len(encoder._pending) == 3
    for text in TEXTS[:3]:
        got = encoder.encode_one(text, 1, (2, 4, 6))
        np.testing.assert_array_equal(got.layers, expected[text].layers)
        np.testing.assert_array_equal(got.vectors, expected[text].vectors)
    assert not encoder._pending  # each result collected once
    # other settings than the prefetch's are encoded on the spot, the pending one stays
    encoder_module.prefetch_live("block my card")
    alone = encoder.encode_one("block my card", 1, (6,))
    assert alone.layers is not None and alone.layers.shape == (encoder.dim,)
    assert len(encoder._pending) == 1


def test_uncollected_prefetches_are_bounded_and_copies_do_not_prefetch() -> None:
    from nlu_components import encoder as encoder_module

    encoder = SentenceEncoder(None, max_length=16)
    encoder.enable_prefetch(1, [6])
    for i in range(encoder_module.MAX_PENDING_PREFETCHES + 10):
        encoder.prefetch(f"message number {i}")
    assert len(encoder._pending) == encoder_module.MAX_PENDING_PREFETCHES
    assert "message number 0" not in {text for text, _ in encoder._pending}
    tuned = encoder.with_state({})
    tuned.prefetch("hello")
    assert tuned._prefetch is None and not tuned._pending


def test_a_forked_child_prefetches_with_its_own_thread() -> None:
    """A process forked after the worker thread started must not queue work on a dead thread."""
    import multiprocessing

    encoder = SentenceEncoder(None, max_length=16)
    encoder.enable_prefetch(1, [6])
    encoder.prefetch("start the parent's worker")
    encoder.encode_one("start the parent's worker", 1, (6,))
    expected = encoder.encode_one("block my card", 1, (6,)).layers

    def child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
        encoder.prefetch("block my card")
        queue.put(encoder.encode_one("block my card", 1, (6,)).layers.tolist())

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    try:
        got = queue.get(timeout=60)  # a hang here is the bug
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    np.testing.assert_allclose(np.array(got, dtype=np.float32), expected, atol=1e-6)


def test_packed_products_equal_the_plain_ones() -> None:
    from nlu_components.lean import _plain, _products

    dtypes = [torch.float32] + ([torch.bfloat16] if has_fast_bf16() else [])
    generator = torch.Generator().manual_seed(0)
    for dtype in dtypes:
        linear, linear_gelu, pack = _products(dtype, 384)
        plain_linear, plain_gelu, _ = _plain()
        w = torch.randn(1536, 384, generator=generator).to(dtype)
        b = torch.randn(1536, generator=generator).to(dtype)
        packed = pack(w)
        for rows in (1, 7, 20, 130):  # the packing's size hint is 16: any count must work
            x = torch.randn(rows, 384, generator=generator).to(dtype)
            with torch.inference_mode():
                got, want = linear(x, packed, b), plain_linear(x, w, b)
                assert got.shape == want.shape == (rows, 1536)
                if dtype == torch.bfloat16:
                    assert torch.equal(got, want)  # the same oneDNN kernel, bit for bit
                else:
                    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
                torch.testing.assert_close(
                    linear_gelu(x, packed, b).float(),
                    plain_gelu(x, w, b).float(),
                    rtol=2e-2,
                    atol=2e-2,
                )


def test_packed_forward_agrees_with_the_plain_forward(encoder: SentenceEncoder) -> None:
    packed = dict(lean_forwards(encoder, packed=True))
    plain = dict(lean_forwards(encoder, packed=False))
    assert packed.keys() == plain.keys()
    for name in packed:
        for text in TEXTS:
            a, b = packed[name](text, (3, 6)), plain[name](text, (3, 6))
            np.testing.assert_array_equal(a.offsets, b.offsets)
            assert _cos(a.sentence, b.sentence) >= MIN_AGREEMENT
            for x, y in zip(a.vectors, b.vectors):
                assert _cos(x, y) >= MIN_TOKEN_AGREEMENT
