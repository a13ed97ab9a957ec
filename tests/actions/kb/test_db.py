"""Schema migrations on a real database: fresh, upgraded with data kept, shared with Rasa."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from actions.kb.db import VERSION_TABLE, current_revision, make_engine, upgrade
from actions.kb.errors import DatabaseUnavailableError


def _tables(engine: sa.engine.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_fresh_database_gets_every_table(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == "0002_vectors"
    assert {"kb_articles", "kb_questions", "kb_vectors", "kb_state", VERSION_TABLE} <= _tables(
        engine
    )
    upgrade(engine)  # idempotent
    assert current_revision(engine) == "0002_vectors"


def test_upgrade_keeps_existing_articles_and_foreign_tables(db_url: str) -> None:
    engine = make_engine(db_url)
    # another component's tables in the same database: Rasa's tracker store and an alembic history
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255))")
        )
        connection.execute(sa.text("INSERT INTO events (id, sender_id) VALUES (1, 'customer')"))
        connection.execute(
            sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        )
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('someone_elses_rev')"))
    upgrade(engine, "0001_articles")
    now = datetime(2024, 1, 1)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO kb_articles (id, intent, title, answer, tags, language, content_hash, created_at, updated_at) "
                "VALUES (:id, NULL, :title, :answer, :tags, 'en', 'x', :now, :now)"
            ),
            {
                "id": "old",
                "title": "Old article",
                "answer": "Still here.",
                "tags": "[]",
                "now": now,
            },
        )
    upgrade(engine)
    with engine.connect() as connection:
        assert (
            connection.execute(sa.text("SELECT title FROM kb_articles WHERE id = 'old'")).scalar()
            == "Old article"
        )
        assert connection.execute(sa.text("SELECT sender_id FROM events")).scalar() == "customer"
        assert (
            connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            == "someone_elses_rev"
        )
    assert current_revision(engine) == "0002_vectors"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    with engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(sa.text("PRAGMA busy_timeout")).scalar() >= 1000
        assert connection.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1


def test_unreachable_database_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-folder' / 'bot.db'}")
    with pytest.raises(DatabaseUnavailableError, match="knowledge-base tables|schema version"):
        upgrade(engine)
    with pytest.raises(DatabaseUnavailableError, match="FUSIONDESK_DB_URL") as error:
        make_engine("nosuchdialect://user:secret@host/db")
    assert "secret" not in str(error.value)
