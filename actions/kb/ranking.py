"""Hybrid ranking: BM25 and dense scores fused with tuned weights, plus a calibrated confidence.

Pure module (numpy only). `KnowledgeIndex` is what the action server keeps in memory; the
benchmark runs the very same object in its three modes (`bm25`, `dense`, `hybrid`).

Fusion (weights tuned on the StackFAQ and BANKING77 dev queries only, see `bot/bench/kb.py`):

    dense  = max cos(query, title/question variant) + answer_weight * cos(query, answer view)
    hybrid = dense + bm25_weight * bm25 / max(bm25 over the articles)

BM25 is divided by the query's best BM25 score so its scale (which grows with query length
and term rarity) does not swamp the cosine scale; the dense part keeps its absolute scale,
which is what makes a threshold on it meaningful.

Confidence of a hit: logistic in its hybrid score and its margin over the best other article,
fitted on the same dev queries plus out-of-scope questions (`RetrievalConfig.calibration`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from actions.kb.article import Article
from actions.kb.bm25 import SparseBM25
from actions.kb.dense import DenseIndex
from actions.kb.text import tokenize

Mode = Literal["bm25", "dense", "hybrid"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class RetrievalConfig:
    """Retrieval and decision settings; the one place their defaults live."""

    # Defaults tuned on dev data only (StackFAQ dev queries and BANKING77 dev utterances
    # against the bank KB, jointly; see `bot/bench/kb.py` and the README's figures).
    #: BM25 term-frequency saturation and length normalisation (a lower b suits articles
    #: whose length comes from many question variants rather than from verbosity).
    k1: float = 0.9
    b: float = 0.4
    #: Weight of the answer-view cosine in the dense score.
    answer_weight: float = 0.25
    #: Weight of the max-normalised BM25 score in the hybrid score.
    bm25_weight: float = 0.1
    #: Logistic calibration (bias, score weight, margin weight) of a hit's confidence: the
    #: probability that the top hit is right, fitted on the same dev queries plus the 100
    #: out-of-scope questions of `data/nlu/out_of_scope.yml` (weighted 3x) as negatives.
    calibration: tuple[float, float, float] = (-5.34, 5.28, 16.44)
    #: Answer directly when the best hit's confidence reaches this (dev: ~98 % of such
    #: answers right on StackFAQ, ~93 % on BANKING77; 4 % of out-of-scope questions).
    answer_threshold: float = 0.6
    #: Offer the top hits as choices when the best one's confidence reaches this; below it the
    #: bot asks to rephrase (92 % of out-of-scope questions end there).
    choice_threshold: float = 0.3
    #: Hits shown as choices must themselves reach this confidence.
    min_choice_confidence: float = 0.05

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError("BM25 needs k1 >= 0 and 0 <= b <= 1")
        if self.answer_weight < 0 or self.bm25_weight < 0:
            raise ValueError("fusion weights must be >= 0")
        if not 0 <= self.choice_threshold <= self.answer_threshold <= 1:
            raise ValueError("need 0 <= choice_threshold <= answer_threshold <= 1")
        if len(self.calibration) != 3:
            raise ValueError("calibration is (bias, score weight, margin weight)")


@dataclass(frozen=True)
class SearchHit:
    """One ranked article."""

    article: Article
    #: Ranking score in the mode searched (hybrid: dense + weighted normalised BM25).
    score: float
    #: Calibrated probability that this article answers the question (hybrid mode).
    confidence: float
    #: The channel scores behind `score`.
    dense: float = 0.0
    bm25: float = 0.0


@dataclass(frozen=True)
class ChannelScores:
    """All articles' scores for one query, per channel."""

    bm25: np.ndarray
    dense: np.ndarray
    hybrid: np.ndarray

    def for_mode(self, mode: Mode) -> np.ndarray:
        return {"bm25": self.bm25, "dense": self.dense, "hybrid": self.hybrid}[mode]


def article_texts(article: Article) -> tuple[list[str], str]:
    """(title + question variants, answer view) — the texts an article is encoded from."""
    questions = [article.title] + [q for q in article.questions if q != article.title]
    return questions, f"{article.title} {article.answer}"


def lexical_document(article: Article) -> list[str]:
    """BM25 tokens of an article: title, question variants and answer."""
    return tokenize(" ".join([article.title, *article.questions, article.answer]))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


@dataclass
class KnowledgeIndex:
    """Articles with their BM25 statistics and vectors, searchable in three modes."""

    articles: list[Article]
    bm25: SparseBM25
    dense: DenseIndex
    config: RetrievalConfig = field(default_factory=RetrievalConfig)

    @classmethod
    def build(
        cls,
        articles: Sequence[Article],
        vectors: Sequence[np.ndarray],
        config: RetrievalConfig | None = None,
    ) -> KnowledgeIndex:
        """Index `articles`; `vectors[i]` holds article i's rows in `article_texts` order
        (title, question variants, then the answer view last)."""
        if len(articles) != len(vectors):
            raise ValueError("one vector matrix per article")
        config = config or RetrievalConfig()
        groups = [np.asarray(v[:-1], dtype=np.float32) for v in vectors]
        dim = vectors[0].shape[1] if vectors else 0
        answers = (
            np.stack([np.asarray(v[-1], dtype=np.float32) for v in vectors])
            if vectors
            else np.zeros((0, dim), dtype=np.float32)
        )
        return cls(
            articles=list(articles),
            bm25=SparseBM25([lexical_document(a) for a in articles], k1=config.k1, b=config.b),
            dense=DenseIndex(groups, answers, config.answer_weight),
            config=config,
        )

    def __len__(self) -> int:
        return len(self.articles)

    def channel_scores(self, query_text: str, query_vector: np.ndarray | None) -> ChannelScores:
        """Scores of every article in every mode for one query (no vector: BM25 only)."""
        bm25 = self.bm25.scores(tokenize(query_text))
        dense = np.zeros_like(bm25) if query_vector is None else self.dense.scores(query_vector)
        top = float(bm25.max()) if len(bm25) else 0.0
        normalised = bm25 / top if top > 0 else np.zeros_like(bm25)
        return ChannelScores(
            bm25=bm25, dense=dense, hybrid=dense + self.config.bm25_weight * normalised
        )

    def confidence(self, score: float, best_other: float) -> float:
        """Calibrated probability that an article with `score` is the answer."""
        bias, w_score, w_margin = self.config.calibration
        return _sigmoid(bias + w_score * score + w_margin * (score - best_other))

    def search(
        self, query_text: str, query_vector: np.ndarray | None, k: int = 3, mode: Mode = "hybrid"
    ) -> list[SearchHit]:
        """The `k` best articles, best first (`query_vector` may be None in `bm25` mode)."""
        if query_vector is None and mode != "bm25":
            raise ValueError(f"mode {mode!r} needs the query vector")
        if not self.articles or k <= 0:
            return []
        scores = self.channel_scores(query_text, query_vector)
        return self.top_hits(scores, k, mode)

    def top_hits(self, scores: ChannelScores, k: int, mode: Mode = "hybrid") -> list[SearchHit]:
        """Turn channel scores into the `k` best hits of `mode`."""
        ranking = scores.for_mode(mode)
        n = len(ranking)
        if n == 0:
            return []
        # one more than k, so the last hit shown still has a "best other" to compare with
        take = min(n, k + 1)
        if take < n:
            candidates = np.argpartition(-ranking, take - 1)[:take]
        else:
            candidates = np.arange(n)
        order = candidates[np.argsort(-ranking[candidates], kind="stable")]
        hybrid = scores.hybrid
        best_two = np.sort(hybrid[np.argpartition(-hybrid, min(1, n - 1))[:2]])[::-1]
        hits = []
        for index in order[:k]:
            value = float(hybrid[index])
            best_other = float(best_two[1] if value >= best_two[0] and n > 1 else best_two[0])
            if n == 1:
                best_other = 0.0
            hits.append(
                SearchHit(
                    article=self.articles[int(index)],
                    score=float(ranking[index]),
                    confidence=self.confidence(value, best_other),
                    dense=float(scores.dense[index]),
                    bm25=float(scores.bm25[index]),
                )
            )
        return hits
