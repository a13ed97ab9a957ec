"""Fixtures for the console: a real web server (`python -m bot.web`) on a temporary database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from argon2 import PasswordHasher

from bot.handoff.db import get_engine
from bot.handoff.repository import HandoffRepository
from tests.support import ROOT, child_env, free_port, running

PASSWORD = "a long test password"


@dataclass
class WebServer:
    url: str
    db_url: str
    repo: HandoffRepository

    def login(self, name: str, password: str = PASSWORD) -> Operator:
        session = requests.Session()
        response = session.post(
            f"{self.url}/console/api/login", json={"name": name, "password": password}, timeout=10
        )
        response.raise_for_status()
        body = response.json()
        return Operator(self, session, body["csrf_token"], body["operator"]["id"])


@dataclass
class Operator:
    server: WebServer
    http: requests.Session
    csrf: str
    id: int

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.server.url}/console/api{path}", timeout=10)

    def post(
        self, path: str, body: dict | None = None, csrf: str | None = "default"
    ) -> requests.Response:
        headers = {} if csrf is None else {"X-CSRF-Token": self.csrf if csrf == "default" else csrf}
        return self.http.post(
            f"{self.server.url}/console/api{path}", json=body or {}, headers=headers, timeout=30
        )


def add_operators(repo: HandoffRepository, *names: str) -> None:
    hasher = PasswordHasher()
    existing = {o.name for o in repo.list_operators()}
    for name in names:
        if name not in existing:
            repo.add_operator(name, hasher.hash(PASSWORD))


def start_web(tmp: Path, db_url: str, rasa_port: int, token: str = "") -> running:
    port = free_port()
    config = tmp / "fusiondesk.yml"
    if not config.exists():
        config.write_text("handoff: {}\n", encoding="utf-8")
    env = child_env(
        FUSIONDESK_DB_URL=db_url,
        FUSIONDESK_RASA_PORT=str(rasa_port),
        FUSIONDESK_RASA_URL=f"http://127.0.0.1:{rasa_port}",
        FUSIONDESK_RASA_TOKEN=token,
        FUSIONDESK_CONFIG=str(config),
    )
    command = [sys.executable, "-m", "bot.web", "--host", "127.0.0.1", "--port", str(port)]
    return running(command, f"http://127.0.0.1:{port}/healthz", tmp, env, timeout=120), port


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """The web server with nobody listening on its Rasa port (deliveries stay pending)."""
    tmp = tmp_path_factory.mktemp("console-web")
    db_url = f"sqlite:///{tmp / 'fusiondesk.db'}"
    repo = HandoffRepository(get_engine(db_url))
    add_operators(repo, "alice", "bob")
    server, port = start_web(tmp, db_url, rasa_port=free_port())
    with server:
        yield WebServer(f"http://127.0.0.1:{port}", db_url, repo)


__all__ = ["ROOT", "Operator", "WebServer", "add_operators", "start_web"]
