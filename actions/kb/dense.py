"""Dense retrieval: cosine similarity to each article's question variants and answer (pure numpy).

Each article contributes a group of unit vectors — its title and question variants — and one
"answer view" vector (title + answer). An article's question score is the best match over its
group (a customer's wording only has to be close to one variant); its answer score is the
similarity to the answer view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class DenseIndex:
    """In-memory matrix of article vectors; scoring a query is two matrix-vector products."""

    def __init__(self, groups: Sequence[np.ndarray], answers: np.ndarray) -> None:
        """
        Args:
            groups: per article, an (n_i, dim) float32 array of unit vectors (n_i >= 1): title
                and question variants.
            answers: (n_articles, dim) unit vectors of the answer views.
        """
        if len(groups) != len(answers):
            raise ValueError("one vector group and one answer vector per article")
        if any(len(group) == 0 for group in groups):
            raise ValueError("every article needs at least one question vector (its title)")
        self.n_articles = len(groups)
        dim = answers.shape[1] if answers.ndim == 2 else 0
        self.questions = (
            np.ascontiguousarray(np.concatenate(list(groups)), dtype=np.float32)
            if groups
            else np.zeros((0, dim), dtype=np.float32)
        )
        sizes = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.answers = np.ascontiguousarray(answers, dtype=np.float32)

    def scores(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(question score, answer score) per article for one unit query vector."""
        if self.n_articles == 0:
            empty = np.zeros(0, dtype=np.float32)
            return empty, empty
        similarities = self.questions @ query
        return np.maximum.reduceat(similarities, self.starts), self.answers @ query
