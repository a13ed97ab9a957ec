"""Import files: the seed YAML, JSON Lines, and malformed files reported by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actions.kb.errors import ArticleFormatError
from actions.kb.yaml_io import dump_yaml, load_path, parse_jsonl, parse_yaml
from tests.actions.kb.conftest import SMALL_KB

ROOT = Path(__file__).resolve().parents[3]


def test_seed_knowledge_base_loads_and_round_trips() -> None:
    articles = load_path(ROOT / "data" / "knowledge_base")
    assert len(articles) >= 77
    assert len({a.id for a in articles}) == len(articles)
    assert all(a.intent and a.questions and len(a.answer) > 40 for a in articles)
    assert parse_yaml(dump_yaml(articles)) == articles


def test_small_kb_parses_with_optional_fields() -> None:
    articles = parse_yaml(SMALL_KB, "small.yml")
    assert [a.id for a in articles] == ["card_arrival", "lost_card", "exchange_rate", "change_pin"]
    assert articles[2].intent is None and articles[1].tags == ("cards", "security")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "articles:\n  - id: a\n    title: T\n    answer: A\n  - id: b\n    title: T\n",
            5,
            "lacks answer",
        ),
        ("articles:\n  - id: a\n    title: [T\n", 4, "not valid YAML"),
        (
            "articles:\n  - id: a\n    title: T\n    answer: A\n  - id: a\n    title: U\n    answer: B\n",
            5,
            "duplicate article id",
        ),
        ("faq:\n  - id: a\n", 1, "articles"),
        ("articles:\n  - id: a\n    title: T\n    answer: A\n    answr: typo\n", 2, "unknown key"),
    ],
)
def test_malformed_yaml_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ArticleFormatError, match=message) as error:
        parse_yaml(text, "bad.yml")
    assert error.value.line == line
    assert str(error.value).startswith(f"bad.yml:{line}: ")


def test_jsonl_faq_format_and_errors() -> None:
    good = "\n".join(json.dumps(r) for r in [
        {"id": "f1", "question": "How do I strike text?", "answer": "Use tildes."},
        {"id": "f2", "title": "Delete account", "answer": "Go to settings.", "questions": ["remove my account"]},
    ])  # fmt: skip
    articles = parse_jsonl(good, "faq.jsonl")
    assert articles[0].title == "How do I strike text?" and articles[1].questions == (
        "remove my account",
    )
    with pytest.raises(ArticleFormatError, match="faq.jsonl:2: not valid JSON"):
        parse_jsonl('{"id": "a", "title": "t", "answer": "a"}\n{broken', "faq.jsonl")


def test_load_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ArticleFormatError, match="no such file"):
        load_path(tmp_path / "missing.yml")
    with pytest.raises(ArticleFormatError, match="no .yml"):
        load_path(tmp_path)
    (tmp_path / "latin1.yml").write_bytes("articles:\n  - id: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ArticleFormatError, match="not UTF-8"):
        load_path(tmp_path / "latin1.yml")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ArticleFormatError, match="unsupported file type"):
        load_path(tmp_path / "notes.txt")


def test_ids_must_be_unique_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(SMALL_KB)
    (tmp_path / "b.yml").write_text(SMALL_KB)
    with pytest.raises(ArticleFormatError, match="also defined in"):
        load_path(tmp_path)
