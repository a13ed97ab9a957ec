"""Ranking on a small fixed knowledge base, in the three modes."""

from __future__ import annotations

import numpy as np
import pytest

from actions.kb.article import Article
from actions.kb.ranking import KnowledgeIndex, RetrievalConfig, article_texts
from tests.actions.kb.fakes import HashingEncoder

ARTICLES = [
    Article(
        id="card_arrival",
        title="When will my new card arrive?",
        questions=("My card has not arrived yet",),
        answer="Cards arrive within 5 working days.",
    ),
    Article(
        id="lost_card",
        title="I lost my card",
        questions=("Someone stole my card",),
        answer="Freeze the card in the app.",
    ),
    Article(
        id="exchange_rate",
        title="Which exchange rate do you use?",
        answer="The interbank rate on weekdays.",
    ),
    Article(
        id="change_pin",
        title="Changing your PIN",
        questions=("How do I change my PIN?",),
        answer="At any ATM.",
    ),
]


@pytest.fixture
def index() -> KnowledgeIndex:
    encoder = HashingEncoder()
    vectors = []
    for article in ARTICLES:
        questions, answer = article_texts(article)
        vectors.append(encoder.encode([*questions, answer]))
    return KnowledgeIndex.build(ARTICLES, vectors)


def _vector(text: str) -> np.ndarray:
    return HashingEncoder().encode([text])[0]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("my card has still not arrived", "card_arrival"),
        ("someone stole my card", "lost_card"),
        ("what exchange rate is used", "exchange_rate"),
        ("change PIN", "change_pin"),
    ],
)
def test_each_mode_finds_the_right_article(
    index: KnowledgeIndex, mode: str, query: str, expected: str
) -> None:
    hits = index.search(query, None if mode == "bm25" else _vector(query), k=3, mode=mode)  # type: ignore[arg-type]
    assert hits[0].article.id == expected
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_confidence_is_higher_for_a_clear_match_than_for_noise(index: KnowledgeIndex) -> None:
    clear = index.search(
        "my new card has not arrived yet", _vector("my new card has not arrived yet")
    )
    noise = index.search("weather forecast tomorrow", _vector("weather forecast tomorrow"))
    assert 0 <= noise[0].confidence < clear[0].confidence <= 1
    assert clear[0].confidence > clear[1].confidence


def test_k_larger_than_the_kb_and_empty_index() -> None:
    encoder = HashingEncoder()
    one = KnowledgeIndex.build(
        ARTICLES[:1], [encoder.encode([*article_texts(ARTICLES[0])[0], "a"])]
    )
    assert len(one.search("card", _vector("card"), k=10)) == 1
    empty = KnowledgeIndex.build([], [])
    assert empty.search("card", _vector("card")) == []


def test_dense_modes_need_a_vector(index: KnowledgeIndex) -> None:
    with pytest.raises(ValueError, match="needs the query vector"):
        index.search("card", None, mode="hybrid")


def test_bm25_weight_changes_the_fusion(index: KnowledgeIndex) -> None:
    query = "exchange"
    base = index.channel_scores(query, _vector(query))
    np.testing.assert_allclose(
        base.hybrid - base.dense, 0.1 * base.bm25 / base.bm25.max(), rtol=1e-5
    )


def test_config_validates_itself() -> None:
    with pytest.raises(ValueError, match="choice_threshold"):
        RetrievalConfig(answer_threshold=0.2, choice_threshold=0.5)
    with pytest.raises(ValueError, match="k1"):
        RetrievalConfig(b=2.0)
