"""Dense retrieval: cosine similarity to each article's question variants and answer.

Each article contributes a group of unit vectors — its title and question variants — and one
"answer view" vector (title + answer). Its dense score is

    max over variants v of cos(query, v)  +  answer_weight * cos(query, answer view)

The answer term is the same for every variant of an article, so it is folded into the rows
once (row = v + answer_weight * answer view): a query then costs one matrix-vector product and
a grouped max, exactly equal to the formula above. The product runs in torch (already loaded
for the encoder) through `nlu_components.nearest.RowSearch`, which times its float32 layouts
when the index is built and keeps the fastest on this CPU.

Large indexes on CPUs with native bfloat16 (AMX / AVX512-BF16) may take a two-stage path, if
it is timed fastest: one bfloat16 product over all rows (≈3× less memory traffic; 50,000 × 384
rows: 1.9 ms instead of 5.6 ms for the float32 GEMV on an Intel machine), then the `RESCORE`
best rows are recomputed exactly in float32. The top of the ranking is then exact; the rest of
the scores are within bfloat16 precision (~0.004).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nlu_components.lean import has_fast_bf16 as _has_fast_bf16
from nlu_components.nearest import RowSearch

#: Rows recomputed exactly after the bfloat16 pass.
RESCORE = 256
#: Indexes with fewer rows use float32 only (the bfloat16 pass does not pay off).
BF16_MIN_ROWS = 4096


class DenseIndex:
    """In-memory matrix of article vectors."""

    def __init__(
        self, groups: Sequence[np.ndarray], answers: np.ndarray, answer_weight: float = 0.0
    ) -> None:
        """
        Args:
            groups: per article, an (n_i, dim) float32 array of unit vectors (n_i >= 1): title
                and question variants.
            answers: (n_articles, dim) unit vectors of the answer views.
            answer_weight: weight of the answer-view similarity.
        """
        if len(groups) != len(answers):
            raise ValueError("one vector group and one answer vector per article")
        if any(len(group) == 0 for group in groups):
            raise ValueError("every article needs at least one question vector (its title)")
        self.n_articles = len(groups)
        self.dim = int(answers.shape[1]) if answers.ndim == 2 and len(answers) else 0
        if groups:
            rows = np.concatenate(
                [
                    np.asarray(g, np.float32) + answer_weight * answers[i]
                    for i, g in enumerate(groups)
                ]
            )
        else:
            rows = np.zeros((0, self.dim), dtype=np.float32)
        self.n_rows = int(rows.shape[0])
        self._search = RowSearch(
            rows, RESCORE, bf16=self.n_rows >= BF16_MIN_ROWS and _has_fast_bf16()
        )
        sizes = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._single = bool(np.all(sizes == 1))

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Dense score of every article for one unit query vector (float32)."""
        if self.n_articles == 0:
            return np.zeros(0, dtype=np.float32)
        vector = torch.from_numpy(np.asarray(query, np.float32))
        with torch.inference_mode():
            similarities = self._search.scores(vector.unsqueeze(0))[:, 0].numpy()
        if self._single:
            return similarities
        return np.maximum.reduceat(similarities, self.starts)
