"""`fusiondesk operator add|list|remove` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from argon2 import PasswordHasher

from bot.handoff.db import get_engine
from bot.handoff.repository import HandoffRepository
from tests.support import ROOT, child_env


def fusiondesk(db_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env=child_env(FUSIONDESK_DB_URL=db_url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_list_remove(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'fusiondesk.db'}"
    added = fusiondesk(
        db_url, "operator", "add", "alice", "--password-stdin", stdin="correct horse battery\n"
    )
    assert added.returncode == 0, added.stderr
    assert "alice" in added.stdout
    operator, password_hash = HandoffRepository(get_engine(db_url)).credentials("alice")
    assert password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(password_hash, "correct horse battery")
    assert "correct horse" not in added.stdout + added.stderr

    again = fusiondesk(
        db_url, "operator", "add", "alice", "--password-stdin", stdin="another password\n"
    )
    assert again.returncode == 2 and "already exists" in again.stderr

    listed = fusiondesk(db_url, "operator", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and "never" in listed.stdout

    removed = fusiondesk(db_url, "operator", "remove", "alice")
    assert removed.returncode == 0
    assert HandoffRepository(get_engine(db_url)).credentials("alice") is None
    assert fusiondesk(db_url, "operator", "remove", "ghost").returncode == 2


def test_bad_input_is_refused_with_a_reason(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'fusiondesk.db'}"
    short = fusiondesk(db_url, "operator", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    bad_name = fusiondesk(
        db_url, "operator", "add", "<script>", "--password-stdin", stdin="long enough pw\n"
    )
    assert bad_name.returncode == 2 and "not a valid name" in bad_name.stderr
    assert HandoffRepository(get_engine(db_url)).list_operators() == []
