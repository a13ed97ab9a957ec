"""Similarity search over unit vectors: the fastest product on this CPU (`RowSearch`), and a
two-stage search, bfloat16 for every row and float32 for the best (`candidates`).

A matrix-vector product over thousands of rows is bound by memory traffic. On CPUs with native
bfloat16 units (`nlu_components.lean.has_fast_bf16`) a bfloat16 copy of the rows halves that
traffic; the few rows that rank best are then recomputed exactly in float32, so the top of the
ranking carries float32 values. Used by the NLU's novelty check (`fusion`) and the knowledge
base's dense retrieval (`actions.kb.dense`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

logger = logging.getLogger(__name__)


def candidates(
    exact: torch.Tensor, approximate: torch.Tensor, queries: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `k` best rows per query by the bfloat16 pass, rescored in float32.

    Args:
        exact: (rows, d) float32 rows.
        approximate: the same rows in bfloat16.
        queries: (m, d) float32 query vectors.
        k: candidates per query (at most `rows`).

    Returns:
        (indices (k, m), their float32 similarities (k, m), every row's bfloat16 similarity
        (rows, m)). Call under `torch.inference_mode()`.
    """
    k = min(k, len(exact))
    if len(queries) == 1:  # one query: GEMV (the bfloat16 GEMM kernel is slower at m = 1)
        scores = torch.mv(approximate, queries[0].to(torch.bfloat16))
        best = torch.topk(scores, k).indices
        rescored = torch.mv(exact[best], queries[0])
        return best.unsqueeze(1), rescored.unsqueeze(1), scores.unsqueeze(1)
    scores = approximate @ queries.to(torch.bfloat16).T
    best = torch.topk(scores, k, dim=0).indices
    rescored = torch.einsum("kmd,md->km", exact[best], queries)
    return best, rescored, scores


#: The ways `RowSearch` can compute similarities to its rows (see its docstring).
KERNELS = ("rows", "columns", "bf16")
#: Rows × dims below which `RowSearch` uses `rows` without timing (all are fast there).
TIMED_MIN_SIZE = 1 << 16
#: The bfloat16 kernel is taken only if this much faster than the best float32 one (its
#: values off the short list are approximate).
BF16_MARGIN = 0.8


class RowSearch:
    """Similarities of query vectors to fixed rows, by the fastest kernel on this CPU.

    Three kernels give the same float32 products, and which is fastest depends on the CPU
    and its BLAS, not on the data:

    - `rows`: one matrix-vector product over the (rows, d) matrix (torch GEMV). Fastest on
      the Intel machines these were first measured on.
    - `columns`: the query times a (d, rows) copy (torch GEMM with one row). On an AMD EPYC
      (Zen 4) with 8,995 × 384 rows: 0.29 ms, against 1.4 ms for `rows` and 0.72 ms for
      the bfloat16 pass.
    - `bf16`: `candidates` — a bfloat16 pass over every row, then the `rescore` best rows
      recomputed in float32, so the best similarities are float32 and the others within
      bfloat16 rounding. Offered on CPUs with native bfloat16 units only.

    Large matrices time each kernel once, on a few of their own rows, when built (a fixed
    choice for the process's life; `kernel` forces one); only the chosen kernel's copy is kept.
    """

    def __init__(
        self,
        rows: np.ndarray,
        rescore: int = 8,
        bf16: bool = False,
        kernel: str | None = None,
    ) -> None:
        """
        Args:
            rows: (n, d) float32 rows (unit vectors for cosine similarities).
            rescore: rows per query recomputed in float32 after the bfloat16 pass.
            bf16: offer the bfloat16 kernel (callers pass `has_fast_bf16()`).
            kernel: use this kernel (one of `KERNELS`) instead of timing them.
        """
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.exact = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        self.rescore = rescore
        self._columns: torch.Tensor | None = None
        self._approximate: torch.Tensor | None = None
        if kernel is None:
            kernel = self._fastest(bf16)  # builds the copies it times
        self.kernel = kernel
        if kernel == "columns" and self._columns is None:
            self._columns = self.exact.T.contiguous()
        elif kernel == "bf16" and self._approximate is None:
            self._approximate = self.exact.to(torch.bfloat16)
        # only the chosen kernel's copy is kept
        if kernel != "columns":
            self._columns = None
        if kernel != "bf16":
            self._approximate = None

    def __len__(self) -> int:
        return int(self.exact.shape[0])

    def _fastest(self, bf16: bool) -> str:
        if self.exact.numel() < TIMED_MIN_SIZE or len(self) == 0:
            return "rows"
        timings: dict[str, float] = {}
        self._columns = columns = self.exact.T.contiguous()
        self._approximate = approximate = self.exact.to(torch.bfloat16) if bf16 else None
        probes = self.exact[:: max(1, len(self) // 5)][:5]
        with torch.inference_mode():
            runs: dict[str, Callable[[torch.Tensor], object]] = {
                "rows": lambda q: torch.mv(self.exact, q),
                "columns": lambda q: q.unsqueeze(0) @ columns,
            }
            if approximate is not None:
                runs["bf16"] = lambda q: candidates(
                    self.exact, approximate, q.unsqueeze(0), self.rescore
                )
            for name, run in runs.items():
                times = []
                for round_ in range(3):
                    started = time.perf_counter()
                    for probe in probes:
                        run(probe)
                    if round_:  # the first round warms up
                        times.append(time.perf_counter() - started)
                timings[name] = min(times)
        best = min(("rows", "columns"), key=timings.__getitem__)
        if "bf16" in timings and timings["bf16"] < BF16_MARGIN * timings[best]:
            best = "bf16"
        logger.info(
            "similarity search over %d × %d rows: %s kernel (%s)",
            len(self),
            self.exact.shape[1],
            best,
            ", ".join(f"{k} {v / len(probes) * 1000:.3f} ms" for k, v in timings.items()),
        )
        return best

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """(rows, m) float32 similarities of every row to each of the (m, d) queries.

        With the `bf16` kernel, the `rescore` best rows per query carry float32 values and
        the others bfloat16-rounded ones. Call under `torch.inference_mode()`.
        """
        if self._approximate is not None:
            best, rescored, scores = candidates(
                self.exact, self._approximate, queries, self.rescore
            )
            values = scores.float()
            values.scatter_(0, best, rescored)
            return values
        if self._columns is not None:
            return (queries @ self._columns).T
        if len(queries) == 1:
            return torch.mv(self.exact, queries[0]).unsqueeze(1)
        return self.exact @ queries.T

    def best(self, queries: torch.Tensor) -> torch.Tensor:
        """(m,) float32 similarity of each query to its nearest row (exact with every kernel:
        the bfloat16 kernel's short list holds the nearest row unless rounding pushed it out,
        when it is the next one's, within that rounding). Call under `torch.inference_mode()`."""
        if self._approximate is not None:
            _, rescored, _ = candidates(self.exact, self._approximate, queries, self.rescore)
            return rescored.max(dim=0).values
        return self.scores(queries).max(dim=0).values
