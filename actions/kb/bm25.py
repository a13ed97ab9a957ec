"""Lexical retrieval: Okapi BM25 from `rank_bm25`, scored through a sparse matrix.

`rank_bm25.BM25Okapi` computes the statistics (document frequencies, idf with its epsilon
floor, document lengths); scoring one query with it walks every document in Python, which
takes tens of milliseconds at 10,000 articles. The per-(term, document) BM25 weights do not
depend on the query, so they are laid out once in a sparse matrix and a query costs one
sparse column gather: the scores equal `BM25Okapi.get_scores` (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rank_bm25 import BM25Okapi
from scipy import sparse


class SparseBM25:
    """BM25 scores of a query against every document, in document order."""

    def __init__(
        self, documents: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75
    ) -> None:
        self.n_documents = len(documents)
        self.vocabulary: dict[str, int] = {}
        if not documents or not any(documents):
            self._weights = sparse.csc_matrix((self.n_documents, 0), dtype=np.float32)
            return
        # rank_bm25 divides by the corpus size: give it no empty corpus, and no empty documents
        # (they score 0 for every query, which is what an empty document should score)
        okapi = BM25Okapi([list(doc) or ["\x00"] for doc in documents], k1=k1, b=b)
        rows: list[int] = []
        cols: list[int] = []
        frequencies: list[int] = []
        vocabulary = self.vocabulary
        for row, counts in enumerate(okapi.doc_freqs):
            for term, tf in counts.items():
                col = vocabulary.get(term)
                if col is None:
                    col = vocabulary[term] = len(vocabulary)
                cols.append(col)
                frequencies.append(tf)
            rows.extend([row] * len(counts))
        idf = np.fromiter(
            (okapi.idf[term] for term in vocabulary), dtype=np.float64, count=len(vocabulary)
        )
        lengths = np.asarray(okapi.doc_len, dtype=np.float64)
        norms = k1 * (1 - b + b * lengths / okapi.avgdl)
        row_index = np.asarray(rows, dtype=np.int64)
        col_index = np.asarray(cols, dtype=np.int64)
        tf = np.asarray(frequencies, dtype=np.float64)
        weights = idf[col_index] * tf * (k1 + 1) / (tf + norms[row_index])
        self._weights = sparse.csc_matrix(
            (weights.astype(np.float32), (row_index, col_index)),
            shape=(self.n_documents, len(vocabulary)),
        )

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document (float32, shape (n_documents,))."""
        counts: dict[int, int] = {}
        for token in query_tokens:
            col = self.vocabulary.get(token)
            if col is not None:
                counts[col] = counts.get(col, 0) + 1
        if not counts:
            return np.zeros(self.n_documents, dtype=np.float32)
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        weights = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        return np.asarray(self._weights[:, cols] @ weights, dtype=np.float32).ravel()
