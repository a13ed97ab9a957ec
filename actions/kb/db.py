"""Database access: engines, sessions and schema migrations for the knowledge base.

The knowledge base lives in the bot's database (`FUSIONDESK_DB_URL`): by default the SQLite
file that Rasa's tracker store also writes, shared by three processes, so SQLite connections
run in WAL mode with a busy timeout. Nothing here touches the database at import time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from actions.kb.errors import DatabaseUnavailableError
from bot.sqlite import use_wal

logger = logging.getLogger(__name__)

#: Alembic's version table for our migrations (not the default `alembic_version`).
VERSION_TABLE = "kb_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: How long a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 15_000

_upgrade_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for `url` (SQLite: WAL + busy timeout + foreign keys).

    Raises:
        DatabaseUnavailableError: the URL is malformed or its driver is not installed.
    """
    kwargs: dict[str, Any] = {"future": True}
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        }
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool  # one in-memory database for every session
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise DatabaseUnavailableError(
            f"cannot use database URL {_redact(url)}: {e}. Check FUSIONDESK_DB_URL."
        ) from e
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _redact(url: str) -> str:
    """The URL without its password (never log secrets)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparsable URL>"


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error.

    Raises:
        DatabaseUnavailableError: the database failed (connection, lock, constraint).
    """
    session: Session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as e:
        session.rollback()
        raise DatabaseUnavailableError(f"knowledge-base database error: {_short(e)}") from e
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _short(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.splitlines()[0][:300] if text else type(error).__name__


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The applied migration revision, or None for a database without our tables."""
    from alembic.migration import MigrationContext

    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    except SQLAlchemyError as e:
        raise DatabaseUnavailableError(f"cannot read the schema version: {_short(e)}") from e


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (existing data is kept).

    Safe to call from several processes: a process that loses the race sees the tables the
    winner created and retries once.

    Raises:
        DatabaseUnavailableError: the database cannot be reached or the migration failed.
    """
    from alembic import command

    with _upgrade_lock:
        for attempt in (1, 2):
            try:
                with engine.begin() as connection:
                    command.upgrade(_alembic_config(connection), revision)
                return
            except SQLAlchemyError as e:
                if attempt == 2:
                    raise DatabaseUnavailableError(
                        f"cannot create or upgrade the knowledge-base tables: {_short(e)}"
                    ) from e
                logger.info("knowledge-base migration raced another process; retrying")
