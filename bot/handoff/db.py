"""Engine and sessions for the handoff tables.

SQLite is shared by three processes (Rasa, the action server, the web server): every connection
gets WAL journaling (readers never block the writer) and a busy timeout, so a write waits for
another process's instead of failing with "database is locked".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.handoff.models import Base
from bot.sqlite import use_wal

#: Milliseconds a SQLite write waits for another process's lock.
SQLITE_BUSY_TIMEOUT_MS = 10_000

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    use_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def create_db_engine(db_url: str) -> Engine:
    """A new engine for `db_url` with the SQLite settings above; tables created if missing."""
    is_sqlite = db_url.startswith("sqlite")
    kwargs: dict[str, Any] = {"future": True}
    if is_sqlite:
        kwargs["connect_args"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "check_same_thread": False,
        }
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(db_url, **kwargs)
    if is_sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    create_tables(engine)
    return engine


def get_engine(db_url: str) -> Engine:
    """The process-wide engine for `db_url` (created once; tables created if missing)."""
    with _engines_lock:
        engine = _engines.get(db_url)
        if engine is None:
            engine = _engines[db_url] = create_db_engine(db_url)
        return engine


def create_tables(engine: Engine, attempts: int = 20) -> None:
    """Create the `handoff_*` tables and indexes that do not exist yet.

    Idempotent, and safe when several processes start at once: a CREATE that loses the race to
    another process ("already exists") is retried, and each retry only creates what is still
    missing.
    """
    for attempt in range(1, attempts + 1):
        try:
            Base.metadata.create_all(engine, checkfirst=True)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as e:
            message = str(e).lower()
            if attempt == attempts or (
                "already exists" not in message and "duplicate" not in message
            ):
                raise
            time.sleep(0.02 * attempt)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded attributes readable after commit."""
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session: Session = make_sessionmaker(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
