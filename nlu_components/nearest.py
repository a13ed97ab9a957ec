"""Two-stage similarity search over unit vectors: bfloat16 for every row, float32 for the best.

A matrix-vector product over thousands of rows is bound by memory traffic. On CPUs with native
bfloat16 units (`nlu_components.lean.has_fast_bf16`) a bfloat16 copy of the rows halves that
traffic; the few rows that rank best are then recomputed exactly in float32, so the top of the
ranking carries float32 values. Used by the NLU's novelty check (`fusion`) and the knowledge
base's dense retrieval (`actions.kb.dense`).
"""

from __future__ import annotations

import torch


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
