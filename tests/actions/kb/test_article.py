"""Article validation: what may enter the knowledge base."""

from __future__ import annotations

import pytest

from actions.kb.article import MAX_ANSWER_CHARS, Article, article_from_mapping
from actions.kb.errors import ArticleFormatError


def _raw(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": "card_arrival",
        "title": "When will my card arrive?",
        "answer": "Soon.",
    }
    raw.update(overrides)
    return raw


def test_valid_article_is_normalised() -> None:
    article = article_from_mapping(
        _raw(
            title="  When   will my\ncard arrive? ",
            questions=["Where is it?", "Where is it?"],
            tags=["cards"],
        )
    )
    assert article.title == "When will my card arrive?"
    assert article.questions == ("Where is it?",)  # duplicates dropped
    assert article.language == "en"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_raw(answer=""), "lacks answer"),
        ({"id": "x", "title": "t"}, "lacks answer"),
        (_raw(id="has space"), "may only use"),
        (_raw(id="x;DROP TABLE kb_articles"), "may only use"),
        (_raw(colour="red"), r"unknown key\(s\) colour"),
        (_raw(questions="not a list"), "must be a list"),
        (_raw(questions=[["nested"]]), "must be text"),
        (_raw(language="english"), "not a language code"),
        (_raw(intent="card arrival"), "may only use"),
        (_raw(answer="x" * (MAX_ANSWER_CHARS + 1)), "longer than"),
        (_raw(title="a\x00b"), "NUL"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_invalid_articles_are_refused_with_the_reason(raw: object, message: str) -> None:
    with pytest.raises(ArticleFormatError, match=message) as error:
        article_from_mapping(raw, "kb.yml", 7)
    assert str(error.value).startswith("kb.yml:7: ")
    assert error.value.line == 7


def test_content_hash_ignores_update_time_but_not_content() -> None:
    article = Article(id="a", title="T", answer="A", questions=("q",))
    from datetime import datetime

    assert article.content_hash() == article.with_updated_at(datetime(2024, 1, 1)).content_hash()
    assert (
        article.content_hash()
        != Article(id="a", title="T", answer="A2", questions=("q",)).content_hash()
    )
    assert (
        article.content_hash()
        != Article(id="a", title="T", answer="A", questions=("q", "r")).content_hash()
    )


def test_to_dict_round_trips() -> None:
    article = Article(
        id="a", title="T", answer="A", intent="i", questions=("q",), tags=("t",), language="pt-BR"
    )
    assert article_from_mapping(article.to_dict()) == article
