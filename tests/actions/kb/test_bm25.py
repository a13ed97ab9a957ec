"""The sparse BM25 scores exactly as rank_bm25 does, only faster."""

from __future__ import annotations

import numpy as np
from rank_bm25 import BM25Okapi

from actions.kb.bm25 import SparseBM25

DOCS = [
    ["card", "arriv", "deliver", "card"],
    ["lost", "card", "stolen", "freez"],
    ["exchang", "rate", "currenc"],
    ["pin", "chang", "atm", "pin", "pin"],
    ["top", "up", "limit"],
]


def test_scores_equal_rank_bm25() -> None:
    reference = BM25Okapi(DOCS)
    index = SparseBM25(DOCS)
    for query in (["card"], ["pin", "atm"], ["card", "card", "lost"], ["exchang", "nothing"]):
        np.testing.assert_allclose(
            index.scores(query), reference.get_scores(query), rtol=1e-5, atol=1e-6
        )


def test_unknown_terms_and_empty_inputs_score_zero() -> None:
    index = SparseBM25(DOCS)
    assert not index.scores(["zebra"]).any()
    assert not index.scores([]).any()
    assert SparseBM25([]).scores(["card"]).shape == (0,)
    empty_docs = SparseBM25([[], ["card"], ["pin"]])
    scores = empty_docs.scores(["card"])
    assert scores[0] == 0 and scores[1] > 0
