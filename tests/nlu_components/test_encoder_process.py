"""The child encoder process: identical vectors, and a message is never lost to its failures."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nlu_components import encoder as encoder_module
from nlu_components.encoder import SentenceEncoder, TokenEncoding
from nlu_components.encoder_process import EncoderProcess, EncoderProcessError
from nlu_components.errors import ComponentConfigError

LAYERS = (2, 4, 6)
TEXTS = [
    "I still haven't received my new card",
    "send 50 euros to Anna tomorrow",
    "",
    "🙂🙂🙂",
    "¿Dónde está mi tarjeta de crédito?",
    "\x00\x01 binary \xff junk",
    "why " * 5000,
]


def _assert_same(a: TokenEncoding, b: TokenEncoding) -> None:
    for field in ("vectors", "offsets", "sentence", "layers"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.fixture()
def encoder() -> Iterator[SentenceEncoder]:
    """A private encoder (not the shared one) whose child process is stopped afterwards."""
    encoder = SentenceEncoder(None, max_length=64)
    assert encoder.single_path() is not None, "the lean path is what the child runs"
    yield encoder
    encoder.close_process()


def _started(encoder: SentenceEncoder) -> EncoderProcess:
    encoder.enable_prefetch(1, LAYERS, worker="process")
    process = encoder._process
    assert process is not None, "worker='process' with one thread starts a child"
    assert process.wait_ready(120), process.broken
    return process


def test_the_child_gives_bit_identical_encodings(encoder: SentenceEncoder) -> None:
    expected = [encoder._encode_single(text, 1, LAYERS) for text in TEXTS]
    process = _started(encoder)
    assert process.pid != os.getpid()
    for text in TEXTS:
        encoder_module.prefetch_live(text)
    assert all(type(p).__name__ == "_Pending" for p in encoder._pending.values())
    for text, want in zip(TEXTS, expected):
        _assert_same(encoder.encode_one(text, 1, LAYERS), want)
    assert not encoder._pending
    assert process.broken is None


def test_a_killed_child_loses_no_message(
    encoder: SentenceEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    text = "my card still has not arrived"
    expected = encoder._encode_single(text, 1, LAYERS)
    process = _started(encoder)
    encoder.prefetch(text)  # sent to the child ...
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)  # ... which dies before answering
    with caplog.at_level(logging.WARNING, logger="nlu_components.encoder_process"):
        _assert_same(encoder.encode_one(text, 1, LAYERS), expected)
    assert process.broken and "encoded in this process" in caplog.text
    # later messages go to the worker thread
    encoder.prefetch("block my card")
    pending = encoder._pending[("block my card", LAYERS)]
    assert type(pending).__name__ == "Future"
    _assert_same(
        encoder.encode_one("block my card", 1, LAYERS),
        encoder._encode_single("block my card", 1, LAYERS),
    )


def test_a_child_that_cannot_load_is_never_used(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    process = EncoderProcess(tmp_path, 64, 8, "auto", "bf16")
    try:
        assert not process.wait_ready(120)
        assert "could not load the encoder" in str(process.broken)
        with pytest.raises(EncoderProcessError):
            process.submit("hello", LAYERS)
    finally:
        process.close()


def test_a_child_on_another_path_is_not_used(encoder: SentenceEncoder) -> None:
    process = EncoderProcess(encoder.path, 64, 64, encoder.precision, "some-other-path")
    try:
        assert not process.wait_ready(120)
        assert "picked the" in str(process.broken)
    finally:
        process.close()


def test_uncollected_requests_never_block_the_pipes(encoder: SentenceEncoder) -> None:
    """Results nobody collects are drained, so the child never stalls on a full pipe."""
    process = _started(encoder)
    long_text = "please tell me why my transfer is still pending " * 4
    for i in range(encoder_module.MAX_PENDING_PREFETCHES * 4):  # ~4 MB of results
        encoder.prefetch(f"{i} {long_text}")
    assert len(encoder._pending) == encoder_module.MAX_PENDING_PREFETCHES
    last = f"{encoder_module.MAX_PENDING_PREFETCHES * 4 - 1} {long_text}"
    _assert_same(encoder.encode_one(last, 1, LAYERS), encoder._encode_single(last, 1, LAYERS))
    assert process.broken is None
    assert len(process._futures) <= encoder_module.MAX_PENDING_PREFETCHES  # forgotten ones go


def test_closing_stops_the_child(encoder: SentenceEncoder) -> None:
    process = _started(encoder)
    child = process._process
    assert child is not None and child.poll() is None
    encoder.close_process()
    assert child.poll() is not None
    assert encoder._process is None
    encoder.prefetch("block my card")  # prefetching goes on in the thread
    assert type(encoder._pending[("block my card", LAYERS)]).__name__ == "Future"


def test_a_forked_copy_lets_the_parents_child_be(encoder: SentenceEncoder) -> None:
    process = _started(encoder)
    expected = encoder._encode_single("block my card", 1, LAYERS).layers

    def child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
        encoder.prefetch("block my card")
        queue.put(encoder.encode_one("block my card", 1, LAYERS).layers.tolist())

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    forked = context.Process(target=child, args=(queue,))
    forked.start()
    try:
        got = queue.get(timeout=60)
    finally:
        forked.join(timeout=30)
        if forked.is_alive():
            forked.kill()
    np.testing.assert_array_equal(np.array(got, dtype=np.float32), expected)
    # the parent's child process still serves the parent
    assert process.usable()
    encoder.prefetch("lost card")
    assert type(encoder._pending[("lost card", LAYERS)]).__name__ == "_Pending"
    _assert_same(
        encoder.encode_one("lost card", 1, LAYERS), encoder._encode_single("lost card", 1, LAYERS)
    )


def test_unknown_worker_is_rejected(encoder: SentenceEncoder) -> None:
    with pytest.raises(ComponentConfigError, match="prefetch worker"):
        encoder.enable_prefetch(1, LAYERS, worker="gpu")


def test_more_than_one_thread_keeps_the_thread_worker(encoder: SentenceEncoder) -> None:
    """The child encodes with one thread; other settings would not give the same bits."""
    encoder.enable_prefetch(2, LAYERS, worker="process")
    assert encoder._process is None


class _Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple[str, TokenEncoding]] = []
        self.fail = fail

    def hook(self, encoding: TokenEncoding) -> None:
        import threading

        self.seen.append((threading.current_thread().name, encoding))
        if self.fail:
            raise RuntimeError("a broken hook")


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_live_hooks_see_each_prefetched_encoding_before_it_is_collected(
    encoder: SentenceEncoder, worker: str, caplog: pytest.LogCaptureFixture
) -> None:
    if worker == "process":
        _started(encoder)
    else:
        encoder.enable_prefetch(1, LAYERS, worker="thread")
    recorder, broken = _Recorder(), _Recorder(fail=True)
    encoder_module.add_live_hook(broken.hook)
    encoder_module.add_live_hook(recorder.hook)
    encoder_module.add_live_hook(recorder.hook)  # registered once
    try:
        with caplog.at_level(logging.ERROR):
            encoder.prefetch("block my card")
            got = encoder.encode_one("block my card", 1, LAYERS)
        # the hook ran in the producing thread, on the very encoding the caller then got
        assert len(recorder.seen) == 1 and recorder.seen[0][1] is got
        thread = "encoder-process-reader" if worker == "process" else "encoder-prefetch"
        assert recorder.seen[0][0].startswith(thread)
        assert "a live-encoding hook failed" in caplog.text  # logged; the encoding still came
        _assert_same(got, encoder._encode_single("block my card", 1, LAYERS))
        encoder.encode_one("not prefetched", 1, LAYERS)
        assert len(recorder.seen) == 1  # only prefetched encodings are handed to hooks
    finally:
        broken.fail = False
    # held weakly: a hook goes with its owner
    import gc

    owner = weakref.ref(recorder)
    del recorder
    gc.collect()
    assert owner() is None
    encoder.prefetch("lost card")
    encoder.encode_one("lost card", 1, LAYERS)
    assert len(broken.seen) == 2  # the remaining hook still runs
