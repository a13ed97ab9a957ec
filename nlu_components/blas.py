"""numpy's BLAS on one thread for the small products of one live message."""

from __future__ import annotations

from typing import Any

_BLAS_LIBRARIES: list[Any] | None = None


def _blas_libraries() -> list[Any]:
    global _BLAS_LIBRARIES
    if _BLAS_LIBRARIES is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_LIBRARIES = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _BLAS_LIBRARIES


class one_blas_thread:
    """Context manager running numpy's BLAS on one thread.

    On 2 busy cores, OpenBLAS with 2 threads took ~30 ms for a (6, 384) × (384, 512) product
    that takes ~1 ms on one thread: the per-token projections are small, so they run on one.
    The BLAS libraries are found once; entering and leaving then costs two C calls per
    library (threadpoolctl's own `limit` re-inspects every library, ~0.6 ms per use).
    """

    def __enter__(self) -> None:
        self._restore: list[tuple[Any, int]] = []
        for library in _blas_libraries():
            threads = library.get_num_threads()
            if threads is not None and threads != 1:
                library.set_num_threads(1)
                self._restore.append((library, threads))

    def __exit__(self, *exc: object) -> None:
        for library, threads in self._restore:
            library.set_num_threads(threads)
