"""`fusiondesk run/train` pre-flight checks: each failure names its cause and its fix."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from bot import runner
from bot.cli import main
from bot.errors import CorruptModelError, FusionDeskError, MissingModelPackageError, PortInUseError
from bot.settings import Settings
from tests.support import free_port


def test_port_in_use_names_port_and_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            PortInUseError, match=rf"port {port} for the web server.*FUSIONDESK_WEB_PORT"
        ):
            runner.check_ports_free("127.0.0.1", {"web server": port})
    runner.check_ports_free("127.0.0.1", {"web server": free_port()})  # free → no error


def test_missing_model_package_names_pip_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runner.MODEL_PACKAGES, "fusiondesk_no_such_model_pkg", "no-such-model==1.0")
    with pytest.raises(MissingModelPackageError, match=r"pip install no-such-model==1.0"):
        runner.check_model_packages()


def test_corrupt_or_missing_model(tmp_path: Path) -> None:
    with pytest.raises(FusionDeskError, match="make train"):
        runner.latest_model(tmp_path)
    (tmp_path / "20260101-000000-broken.tar.gz").write_bytes(b"not a tar archive at all")
    with pytest.raises(CorruptModelError, match="corrupt.*Delete it and run `make train`"):
        runner.latest_model(tmp_path)


def test_cli_reports_errors_with_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(runner.MODEL_PACKAGES, "fusiondesk_no_such_model_pkg", "no-such-model==1.0")
    assert main(["train"]) == 2
    assert "pip install no-such-model==1.0" in capsys.readouterr().err


def test_bad_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONDESK_RASA_PORT", "fifty")
    with pytest.raises(FusionDeskError, match="FUSIONDESK_RASA_PORT"):
        Settings.from_env()


def test_endpoints_follow_settings(tmp_path: Path) -> None:
    settings = Settings(actions_port=6055, db_url=f"sqlite:///{tmp_path / 'bot.db'}")
    path = runner.write_endpoints(settings, tmp_path / "endpoints.yml")
    endpoints = yaml.safe_load(path.read_text())
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:6055/webhook"
    assert endpoints["tracker_store"] == {
        "type": "SQL",
        "dialect": "sqlite",
        "db": str(tmp_path / "bot.db"),
    }
    pg = runner.tracker_store_config("postgresql://bot:s3cret@db.example:5433/fusiondesk")
    assert pg["dialect"] == "postgresql" and pg["url"] == "db.example" and pg["port"] == 5433
    assert "s3cret" not in yaml.safe_dump(pg)  # the password stays in the environment


def test_rasa_run_takes_a_token_that_begins_with_a_dash(tmp_path: Path) -> None:
    """`secrets.token_urlsafe` begins with "-" once in 64 tokens: `rasa run` must still start."""
    from rasa.__main__ import create_argument_parser

    token = "-x9_" + "a" * 28
    command = runner.rasa_server_command(
        Settings(), tmp_path / "model.tar.gz", tmp_path / "endpoints.yml", token
    )
    assert command[1:3] == ["-m", "rasa"]
    parsed = create_argument_parser().parse_args(command[3:])  # Rasa's own command line parser
    assert parsed.auth_token == token
    assert parsed.enable_api and parsed.model == str(tmp_path / "model.tar.gz")
    # the form used before: argparse takes the token for an option and stops
    with pytest.raises(SystemExit):
        create_argument_parser().parse_args(["run", "--auth-token", token])
