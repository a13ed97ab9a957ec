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
from collections.abc import Sequence
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
    """Handle of one child encoder process (start-up is asynchronous; see `ready`)."""

    def __init__(
        self, model_path: Path, max_length: int, batch_size: int, precision: str, path_name: str
    ) -> None:
        self.expected_path = path_name
        self.owner_pid = os.getpid()
        self.broken: str | None = None
        self._ready = False
        self._lock = threading.RLock()
        self._next_id = 0
        #: ids whose results someone still wants, and results read ahead of their turn
        self._wanted: set[int] = set()
        self._arrived: dict[int, TokenEncoding | str] = {}
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
            self._drain()  # keep the result pipe flowing so the child never blocks on it
            request_id = self._next_id
            self._next_id += 1
            try:
                self._requests.send_bytes(
                    json.dumps({"id": request_id, "text": text, "layers": list(layers)}).encode()
                )
            except OSError as e:
                self._fail(f"request failed ({e})")
                raise EncoderProcessError(str(self.broken)) from e
            self._wanted.add(request_id)
            return _Pending(self, request_id)

    def forget(self, request_id: int) -> None:
        """The caller no longer wants this result (it is dropped when it arrives)."""
        with self._lock:
            self._wanted.discard(request_id)
            self._arrived.pop(request_id, None)

    def result(self, request_id: int, timeout: float = RESULT_TIMEOUT) -> TokenEncoding:
        with self._lock:
            try:
                while request_id not in self._arrived:
                    if self.broken is not None:
                        raise EncoderProcessError(self.broken)
                    if not self._results.poll(timeout):
                        self._fail(f"no result within {timeout:.0f} s")
                        raise EncoderProcessError(str(self.broken))
                    self._read_one()
                outcome = self._arrived.pop(request_id)
            finally:
                self._wanted.discard(request_id)
        if isinstance(outcome, str):
            raise EncoderProcessError(outcome)
        return outcome

    def close(self) -> None:
        """Stop the child (also done when this handle is collected or the process exits)."""
        self._finalizer()

    def abandon(self) -> None:
        """In a process forked from the owner: let go of the pipes, leave the child running."""
        self._finalizer.detach()
        self.broken = "belongs to the parent process"
        for connection in (self._requests, self._results):
            try:
                connection.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ internals
    def _drain(self) -> None:
        try:
            while self.broken is None and self._results.poll(0):
                self._read_one()
        except EncoderProcessError:
            pass

    def _read_one(self) -> None:
        try:
            header = json.loads(self._results.recv_bytes())
            payload = b"" if "error" in header else self._results.recv_bytes()
        except (OSError, EOFError, ValueError) as e:
            code = None if self._process is None else self._process.poll()
            self._fail(f"lost ({'exit code ' + str(code) if code is not None else e})")
            raise EncoderProcessError(str(self.broken)) from e
        request_id = int(header["id"])
        if request_id not in self._wanted:
            return  # nobody collects it any more
        if "error" in header:
            self._arrived[request_id] = f"encoder process: {header['error']}"
        else:
            self._arrived[request_id] = _decode(header, payload)

    def _fail(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
            logger.warning(
                "encoder process %s %s: live messages are encoded in this process instead",
                self.pid,
                reason,
            )
            self._finalizer()


class _Pending:
    """`Future`-like handle of one request (only `result` is needed by the encoder)."""

    def __init__(self, owner: EncoderProcess, request_id: int) -> None:
        self._owner = owner
        self._id = request_id

    def result(self) -> TokenEncoding:
        return self._owner.result(self._id)

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
