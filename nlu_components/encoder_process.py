"""A child process that encodes live messages while the parent process parses them.

`ParsingSpacyNLP` starts the transformer on an incoming message's text before spaCy parses it.
In a worker *thread* the two models share one Python interpreter: spaCy's Cython code and the
encoder's ~100 small torch calls take turns holding the GIL, so the overlap hides only part of
the encoder's time. In a child *process* the encoder runs on the other core untouched by the
parser; the parent only pays for sending the text and receiving the vectors (~30 kB).

The child is this module run as a script (`python -m nlu_components.encoder_process`), not a
`multiprocessing` child, so it never re-imports the parent's main module (Rasa, TensorFlow). It
loads the same encoder with the same settings, picks its lean single-text path with the same
agreement check, and then answers requests one by one: the vectors are computed by the same
code on the same weights with one thread, so they are bit-identical to the parent's own
`encode_one` (tested). The parent uses the child only when both picked the same path.

Protocol, over two pipes (frames of `multiprocessing.connection`; no pickle):

* parent → child: one JSON frame per request, `{"id": n, "text": ..., "layers": [...]}`;
  `{"stop": true}` or end-of-file ends the child;
* child → parent: first `{"ready": true, "path": <lean path name>}` or `{"error": ...}`; then
  per request a JSON header (`id`, array shapes and dtypes, or `error`) and one frame with the
  arrays' bytes.

If the child is missing, dies or stalls, the parent encodes the message itself (a warning in
the log) and stops using the child: a message is never lost to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from nlu_components.encoder import TokenEncoding

logger = logging.getLogger(__name__)

#: Seconds the parent waits for one message's vectors before encoding it itself.
RESULT_TIMEOUT = 10.0
#: Fields of a `TokenEncoding`, in the order their bytes are sent.
FIELDS = ("vectors", "offsets", "sentence", "layers")


class EncoderProcessError(RuntimeError):
    """The encoder process could not deliver a result (the caller encodes in-process)."""


class EncoderProcess:
    """Handle of one child encoder process (start-up is asynchronous; see `usable`).

    Once the child is ready, a reader thread receives its results as they arrive, runs
    `on_result` on each (in that thread, while the caller's thread goes on parsing) and
    completes the request's future; results nobody waits for any more are dropped, so the
    pipe never fills up.
    """

    def __init__(
        self,
        model_path: Path,
        max_length: int,
        batch_size: int,
        precision: str,
        path_name: str,
        on_result: Callable[[TokenEncoding], None] | None = None,
    ) -> None:
        self.expected_path = path_name
        self.owner_pid = os.getpid()
        self.broken: str | None = None
        self.on_result = on_result
        self._ready = False
        self._lock = threading.RLock()
        self._next_id = 0
        #: requests whose results someone still wants
        self._futures: dict[int, Future[TokenEncoding]] = {}
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "nlu_components.encoder_process",
            "--requests-fd",
            str(to_child_r),
            "--results-fd",
            str(from_child_w),
            "--model-path",
            str(model_path),
            "--max-length",
            str(max_length),
            "--batch-size",
            str(batch_size),
            "--precision",
            precision,
        ]
        try:
            self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
                command,
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # transformers' load report; errors come as frames
                env=env,
                close_fds=True,
            )
        except (OSError, ValueError) as e:  # ValueError: a platform without pass_fds
            self._process = None
            self.broken = f"could not start ({e})"
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._requests = Connection(to_child_w, readable=False)
        self._results = Connection(from_child_r, writable=False)
        self._finalizer = weakref.finalize(
            self, _shutdown, self.owner_pid, self._process, self._requests, self._results
        )

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def usable(self) -> bool:
        """True once the child has loaded the encoder (checked without blocking)."""
        if self.broken is not None or os.getpid() != self.owner_pid:
            return False
        if self._ready:
            return True
        with self._lock:
            if self._ready or self.broken is not None:
                return self._ready
            try:
                if not self._results.poll(0):
                    if self._process is not None and self._process.poll() is not None:
                        self._fail(f"exited with code {self._process.returncode} while loading")
                    return False
                hello = json.loads(self._results.recv_bytes())
            except (OSError, EOFError, ValueError) as e:
                self._fail(f"start-up failed ({e})")
                return False
            if "error" in hello:
                self._fail(f"could not load the encoder: {hello['error']}")
            elif hello.get("path") != self.expected_path:
                self._fail(
                    f"picked the {hello.get('path')!r} path, this process {self.expected_path!r}"
                )
            else:
                self._ready = True
                threading.Thread(
                    target=self._read_results, name="encoder-process-reader", daemon=True
                ).start()
                logger.info("encoder process %s is ready (%s path)", self.pid, self.expected_path)
        return self._ready

    def wait_ready(self, timeout: float) -> bool:
        """Block until the child is ready (tests and warm-up); False if it failed or is slow."""
        with self._lock:
            if not self._ready and self.broken is None:
                try:
                    self._results.poll(timeout)
                except OSError:
                    pass
        return self.usable()

    def submit(self, text: str, layers: Sequence[int]) -> _Pending:
        """Send one text; the returned handle's `result()` collects its encoding."""
        with self._lock:
            if not self.usable():
                raise EncoderProcessError(self.broken or "the encoder process is not ready")
            request_id = self._next_id
            self._next_id += 1
            future: Future[TokenEncoding] = Future()
            self._futures[request_id] = future
            try:
                self._requests.send_bytes(
                    json.dumps({"id": request_id, "text": text, "layers": list(layers)}).encode()
                )
            except OSError as e:
                self._fail(f"request failed ({e})")
                raise EncoderProcessError(str(self.broken)) from e
            return _Pending(self, request_id, future)

    def forget(self, request_id: int) -> None:
        """The caller no longer wants this result (it is dropped when it arrives)."""
        with self._lock:
            self._futures.pop(request_id, None)

    def close(self) -> None:
        """Stop the child (also done when the owning process exits)."""
        with self._lock:
            self.broken = self.broken or "closed"
        self._fail_pending("the encoder process was closed")
        self._finalizer()

    def abandon(self) -> None:
        """In a process forked from the owner: let go of the pipes, leave the child running."""
        self._finalizer.detach()
        self.broken = "belongs to the parent process"
        self._futures.clear()
        for connection in (self._requests, self._results):
            try:
                connection.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ internals
    def _read_results(self) -> None:
        """The reader thread: complete each request's future as its result arrives."""
        while True:
            try:
                header = json.loads(self._results.recv_bytes())
                payload = b"" if "error" in header else self._results.recv_bytes()
            except (OSError, EOFError, ValueError) as e:
                # after close() or at exit (the finalizer has run) the end is expected
                if self.broken is None and self._finalizer.alive:
                    code = None if self._process is None else self._process.poll()
                    cause = f"exit code {code}" if code is not None else type(e).__name__
                    self._fail(f"lost ({cause})")
                return
            with self._lock:
                future = self._futures.pop(int(header.get("id", -1)), None)
            if future is None:
                continue  # nobody collects it any more
            if "error" in header:
                future.set_exception(EncoderProcessError(f"encoder process: {header['error']}"))
                continue
            try:
                encoding = _decode(header, payload)
            except (ValueError, KeyError, TypeError) as e:
                future.set_exception(EncoderProcessError(f"malformed result ({e})"))
                continue
            if self.on_result is not None:
                try:
                    self.on_result(encoding)
                except Exception:  # noqa: BLE001 - a hook must never cost the message
                    logger.exception("a live-encoding hook failed")
            future.set_result(encoding)

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self.broken is not None:
                return
            self.broken = reason
        logger.warning(
            "encoder process %s %s: live messages are encoded in this process instead",
            self.pid,
            reason,
        )
        self._fail_pending(reason)
        self._finalizer()

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            if not future.done():
                future.set_exception(EncoderProcessError(reason))


class _Pending:
    """`Future`-like handle of one request (what the encoder's prefetch map holds)."""

    def __init__(self, owner: EncoderProcess, request_id: int, future: Future[TokenEncoding]):
        self._owner = owner
        self._id = request_id
        self._future = future

    def result(self, timeout: float = RESULT_TIMEOUT) -> TokenEncoding:
        try:
            return self._future.result(timeout)
        except FutureTimeout as e:
            self._owner._fail(f"no result within {timeout:.0f} s")
            raise EncoderProcessError(str(self._owner.broken)) from e

    def cancel(self) -> bool:
        self._owner.forget(self._id)
        return True


def _shutdown(
    owner_pid: int, process: subprocess.Popen[bytes] | None, *connections: Connection
) -> None:
    if os.getpid() != owner_pid:
        return  # a forked copy exiting: the child is its parent's
    try:
        connections[0].send_bytes(b'{"stop": true}')
    except OSError:
        pass
    for connection in connections:
        try:
            connection.close()
        except OSError:
            pass
    if process is not None and process.poll() is None:
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _encode(encoding: TokenEncoding) -> tuple[dict[str, Any], bytes]:
    shapes: dict[str, Any] = {}
    chunks = []
    for name in FIELDS:
        array = getattr(encoding, name)
        if array is None:
            continue
        array = np.ascontiguousarray(array)
        shapes[name] = [list(array.shape), array.dtype.str]
        chunks.append(array.tobytes())
    return {"arrays": shapes}, b"".join(chunks)


def _decode(header: dict[str, Any], payload: bytes) -> TokenEncoding:
    arrays: dict[str, np.ndarray | None] = dict.fromkeys(FIELDS)
    offset = 0
    for name in FIELDS:
        if name not in header["arrays"]:
            continue
        shape, dtype = header["arrays"][name]
        dt = np.dtype(dtype)
        size = int(np.prod(shape)) * dt.itemsize
        arrays[name] = np.frombuffer(payload, dt, count=int(np.prod(shape)), offset=offset)
        arrays[name] = arrays[name].reshape(shape).copy()  # type: ignore[union-attr]
        offset += size
    if offset != len(payload):
        raise ValueError("encoder process sent a malformed result")
    return TokenEncoding(
        vectors=arrays["vectors"],  # type: ignore[arg-type]
        offsets=arrays["offsets"],  # type: ignore[arg-type]
        sentence=arrays["sentence"],  # type: ignore[arg-type]
        layers=arrays["layers"],
    )


def serve(requests: Connection, results: Connection, args: argparse.Namespace) -> None:
    """The child's loop: load the encoder, report the path, answer until told to stop."""
    try:
        from nlu_components.encoder import load_encoder

        encoder = load_encoder(
            args.model_path,
            max_length=args.max_length,
            batch_size=args.batch_size,
            num_threads=1,
            precision=args.precision,
        )
        encoder.single_path()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which carries on without us
        results.send_bytes(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        return
    results.send_bytes(json.dumps({"ready": True, "path": encoder.single_path_name}).encode())
    while True:
        try:
            request = json.loads(requests.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        if request.get("stop"):
            return
        try:
            encoding = encoder.encode_one(str(request["text"]), 1, tuple(request["layers"]))
            header, payload = _encode(encoding)
            header["id"] = request["id"]
        except Exception as e:  # noqa: BLE001 - one bad request must not end the service
            results.send_bytes(json.dumps({"id": request.get("id"), "error": str(e)}).encode())
            continue
        try:
            results.send_bytes(json.dumps(header).encode())
            results.send_bytes(payload)
        except OSError:
            return


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-fd", type=int, required=True)
    parser.add_argument("--results-fd", type=int, required=True)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    serve(
        Connection(args.requests_fd, writable=False),
        Connection(args.results_fd, readable=False),
        args,
    )


if __name__ == "__main__":
    main()
