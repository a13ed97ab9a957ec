"""`fusiondesk kb import | export | list | search | delete` on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import actions.kb.service as service
from actions.kb.yaml_io import parse_yaml
from bot.cli import main
from tests.actions.kb.fakes import HashingEncoder


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path) -> Path:
    db = tmp_path / "bot.db"
    monkeypatch.setenv("FUSIONDESK_DB_URL", f"sqlite:///{db}")
    monkeypatch.setenv("FUSIONDESK_KB_DIR", str(kb_dir))
    monkeypatch.setattr(service, "load_default_encoder", lambda: HashingEncoder())
    monkeypatch.setattr(service, "_instances", {})
    return db


def test_list_seeds_and_shows_articles(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["card_arrival", "change_pin", "exchange_rate", "lost_card"]


def test_import_export_search_delete(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "extra.yml"
    extra.write_text(
        'articles:\n  - id: vaults\n    title: Savings vaults\n    questions: ["open a savings vault"]\n'
        "    answer: Open Vaults in the app.\n"
    )
    assert main(["kb", "import", str(extra)]) == 0
    assert "1 added" in capsys.readouterr().out
    assert main(["kb", "search", "open a savings vault", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == "vaults" and 0 <= hits[0]["confidence"] <= 1
    out = tmp_path / "export.yml"
    assert main(["kb", "export", str(out)]) == 0
    assert {a.id for a in parse_yaml(out.read_text())} == {
        "card_arrival",
        "change_pin",
        "exchange_rate",
        "lost_card",
        "vaults",
    }
    assert main(["kb", "delete", "vaults"]) == 0
    assert main(["kb", "delete", "vaults"]) == 2
    assert "no article with id vaults" in capsys.readouterr().err


def test_malformed_import_reports_the_line_and_imports_nothing(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "articles:\n  - id: ok\n    title: OK\n    answer: Fine.\n  - id: broken\n    title: No answer\n"
    )
    assert main(["kb", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yml:5: article lacks answer (nothing was imported)" in err
    main(["kb", "list", "--json"])
    assert "ok" not in {json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()}


def test_search_text_output_says_what_the_bot_would_do(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kb", "search", "When will my new card arrive?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. When will my new card arrive?  [card_arrival]")
    assert "the bot would:" in out
    assert main(["kb", "search", "card", "-k", "0"]) == 2
