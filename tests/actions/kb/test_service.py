"""The knowledge base against a real database: seeding, import → search → edit → search again
across processes without restarts, stored vectors, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from actions.kb.article import Article
from actions.kb.errors import ArticleFormatError, ArticleNotFoundError, DatabaseUnavailableError
from actions.kb.service import KnowledgeBase
from tests.actions.kb.fakes import HashingEncoder


def _kb(
    db_url: str, seed_dir: Path | None = None, encoder: HashingEncoder | None = None
) -> KnowledgeBase:
    return KnowledgeBase(db_url, encoder=encoder or HashingEncoder(), seed_dir=seed_dir)


def test_seeds_an_empty_database_on_first_use(db_url: str, kb_dir: Path) -> None:
    kb = _kb(db_url, kb_dir)
    assert kb.for_intent("card_arrival").id == "card_arrival"  # type: ignore[union-attr]
    assert len(kb.articles()) == 4
    # a second process does not seed again (and does not duplicate anything)
    assert len(_kb(db_url, kb_dir).articles()) == 4


def test_import_search_edit_search_without_restart(
    db_url: str, kb_dir: Path, tmp_path: Path
) -> None:
    bot = _kb(db_url, kb_dir)  # the action server's instance
    editor = _kb(db_url)  # another process: the CLI
    assert bot.search("how do I change my PIN")[0].article.id == "change_pin"

    new = tmp_path / "new.yml"
    new.write_text(
        "articles:\n  - id: savings_vault\n    title: Saving money in a vault\n"
        '    questions: ["How do I open a savings vault?"]\n    answer: Open Vaults in the app.\n'
    )
    assert editor.import_path(new).added == 1
    hits = bot.search("open a savings vault")
    assert hits[0].article.id == "savings_vault"  # the running instance sees the import

    editor.import_articles([Article(
        id="savings_vault", title="Saving money in a vault", questions=("How do I open a savings vault?",),
        answer="Vaults are under Accounts > Vaults.",
    )])  # fmt: skip
    assert (
        bot.search("open a savings vault")[0].article.answer
        == "Vaults are under Accounts > Vaults."
    )
    assert bot.get("savings_vault").answer == "Vaults are under Accounts > Vaults."  # type: ignore[union-attr]

    editor.delete(["savings_vault"])
    assert all(h.article.id != "savings_vault" for h in bot.search("open a savings vault"))
    with pytest.raises(ArticleNotFoundError):
        editor.delete(["savings_vault"])


def test_vectors_are_stored_and_reused_after_a_restart(db_url: str, kb_dir: Path) -> None:
    first = HashingEncoder()
    _kb(db_url, kb_dir, first).search("card")
    assert first.texts_encoded > 0
    restarted = HashingEncoder()
    hits = _kb(db_url, kb_dir, restarted).search("card")
    assert hits and restarted.texts_encoded == 1  # only the query itself
    other_model = HashingEncoder(key="another-model:64")
    _kb(db_url, kb_dir, other_model).search("card")
    assert other_model.texts_encoded > 1  # vectors of another encoder are recomputed


def test_reimport_of_unchanged_articles_changes_nothing(db_url: str, kb_dir: Path) -> None:
    kb = _kb(db_url, kb_dir)
    kb.articles()
    summary = kb.import_path(kb_dir)
    assert (summary.added, summary.updated, summary.unchanged) == (0, 0, 4)


def test_replace_removes_articles_missing_from_the_file(
    db_url: str, kb_dir: Path, tmp_path: Path
) -> None:
    kb = _kb(db_url, kb_dir)
    only = tmp_path / "only.jsonl"
    only.write_text(
        json.dumps({"id": "solo", "question": "Is this the only article?", "answer": "Yes."}) + "\n"
    )
    summary = kb.import_path(only, replace_all=True)
    assert (summary.added, summary.removed) == (1, 4)
    assert [a.id for a in kb.articles()] == ["solo"]


def test_malformed_import_imports_nothing(db_url: str, kb_dir: Path, tmp_path: Path) -> None:
    kb = _kb(db_url, kb_dir)
    before = kb.articles()
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "articles:\n  - id: fine\n    title: Fine\n    answer: Fine.\n"
        "  - id: broken\n    title: Broken\n"
    )
    with pytest.raises(ArticleFormatError, match=r"bad.yml:5: article lacks answer"):
        kb.import_path(bad)
    assert kb.articles() == before


@pytest.mark.parametrize(
    "question",
    [
        "",
        "   ",
        "card " * 10_000,  # 50,000 characters
        "'; DROP TABLE kb_articles; --",
        "<script>alert('x')</script><b>card</b> arrive",
        "\x00\x01 card",
        "카드가 도착하지 않았어요 🙃",
    ],
)
def test_bad_questions_neither_crash_nor_harm(db_url: str, kb_dir: Path, question: str) -> None:
    kb = _kb(db_url, kb_dir)
    hits = kb.search(question)
    assert all(0 <= h.confidence <= 1 for h in hits)
    assert len(kb.articles()) == 4  # nothing was dropped


def test_database_down_is_a_knowledge_base_error(tmp_path: Path, kb_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    kb = _kb(url, kb_dir)
    assert kb.search("card")
    engine = sa.create_engine(url)
    with (
        engine.begin() as connection
    ):  # the database loses our tables (e.g. restored from an old backup)
        connection.execute(sa.text("DROP TABLE kb_state"))
    with pytest.raises(DatabaseUnavailableError):
        kb.search("card")
    gone = _kb(f"sqlite:///{tmp_path / 'no-such-folder' / 'bot.db'}", kb_dir)
    with pytest.raises(DatabaseUnavailableError):
        gone.search("card")


def test_encoder_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from actions.kb.errors import EncoderUnavailableError
    from actions.kb.service import query_threads_from_env

    monkeypatch.delenv("FUSIONDESK_KB_THREADS", raising=False)
    assert query_threads_from_env() == 1
    monkeypatch.setenv("FUSIONDESK_KB_THREADS", " 2 ")
    assert query_threads_from_env() == 2
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("FUSIONDESK_KB_THREADS", bad)
        with pytest.raises(EncoderUnavailableError, match="FUSIONDESK_KB_THREADS"):
            query_threads_from_env()


def test_a_change_by_another_process_is_seen_by_the_next_search(db_url: str, kb_dir: Path) -> None:
    """The revision check reads the state row with plain SQL: a write through another
    engine (another process) must still be noticed on the very next search."""
    bot = _kb(db_url, kb_dir)
    assert bot.search("how do I change my PIN")[0].article.id == "change_pin"
    first = bot._revision()
    other = KnowledgeBase(sa.create_engine(db_url), encoder=HashingEncoder(), seed_dir=None)
    other.delete(["change_pin"])
    assert bot._revision() > first
    assert all(hit.article.id != "change_pin" for hit in bot.search("how do I change my PIN"))
