"""Knowledge-base fixtures: a real database per test (SQLite file; PostgreSQL when
`FUSIONDESK_TEST_PG_URL` names a server) and a small fixed knowledge base."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.actions.kb.fakes import HashingEncoder

PG_URL = os.environ.get("FUSIONDESK_TEST_PG_URL", "")

SMALL_KB = """\
articles:
  - id: card_arrival
    intent: card_arrival
    title: When will my new card arrive?
    tags: [cards]
    questions:
      - My card has not arrived yet
      - How long does card delivery take?
    answer: Cards arrive within 5 working days of ordering.
  - id: lost_card
    intent: lost_or_stolen_card
    title: I lost my card or it was stolen
    tags: [cards, security]
    questions:
      - Someone stole my card
      - I can't find my card anywhere
    answer: Freeze the card in the app at once, then order a replacement.
  - id: exchange_rate
    title: Which exchange rate do you use?
    questions:
      - What rate do you use to convert currencies?
    answer: We use the interbank exchange rate with no hidden mark-up on weekdays.
  - id: change_pin
    title: Changing your PIN
    questions:
      - How do I change my PIN number?
    answer: You can change your PIN at any ATM that supports PIN changes.
"""


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "bank.yml").write_text(SMALL_KB, encoding="utf-8")
    return folder


def _postgres_database() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", future=True)
    name = f"fd_kb_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.integration]),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kb.db'}"
        return
    if not PG_URL:
        pytest.skip("FUSIONDESK_TEST_PG_URL is not set (no PostgreSQL server)")
    yield from _postgres_database()


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder()
