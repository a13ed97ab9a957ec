"""SQLite settings shared by every engine on the bot's database file.

The tracker store, the handoff tables and the knowledge base share one SQLite file between
processes (Rasa, the action server, the web server), each connection in WAL mode.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any


def use_wal(cursor: Any, attempts: int = 100) -> None:
    """Switch the database file to WAL journaling (it stays so; later connections skip this).

    The switch needs a moment of exclusive access, and SQLite answers "database is locked" at
    once, without its busy timeout, when other connections open the new file at the same
    moment (seen with six processes starting together): retry for up to about 5 seconds.
    """
    for attempt in range(1, attempts + 1):
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()
            if mode is not None and str(mode[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e).lower() or attempt == attempts:
                raise
            time.sleep(0.001 * attempt)
