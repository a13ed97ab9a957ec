"""The whole bot on free ports for end-to-end tests: real Rasa (SQL tracker store on a temporary
SQLite file shared with the handoff tables), the real action server and the real web server,
each of which can be stopped and started again; plus a socket.io customer."""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
import urllib.request
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import socketio

from bot.handoff.db import get_engine
from bot.handoff.repository import HandoffRepository, TicketView
from tests.console.conftest import Operator, WebServer, add_operators
from tests.support import action_server, child_env, free_port, rasa_server, running


class Stack:
    """Rasa + actions + web server sharing one database; `stop`/`start` one of them at will."""

    def __init__(self, project: Path, model: Path, tmp: Path) -> None:
        self.project, self.model, self.tmp = project, model, tmp
        self.db = tmp / "fusiondesk.db"
        self.db_url = f"sqlite:///{self.db}"
        self.token = secrets.token_urlsafe(16)
        self.rasa_port, self.actions_port, self.web_port = free_port(), free_port(), free_port()
        config = tmp / "fusiondesk.yml"
        config.write_text("handoff: {}\n", encoding="utf-8")
        self.env = child_env(
            FUSIONDESK_DB_URL=self.db_url,
            FUSIONDESK_CONFIG=str(config),
            FUSIONDESK_RASA_TOKEN=self.token,
            FUSIONDESK_RASA_PORT=str(self.rasa_port),
            FUSIONDESK_RASA_URL=f"http://127.0.0.1:{self.rasa_port}",
        )
        self.repo = HandoffRepository(get_engine(self.db_url))
        add_operators(self.repo, "alice", "bob")
        self._running: dict[str, AbstractContextManager[Any]] = {}

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def web(self) -> WebServer:
        return WebServer(f"http://127.0.0.1:{self.web_port}", self.db_url, self.repo)

    def _server(self, name: str) -> AbstractContextManager[Any]:
        if name == "actions":
            return action_server(self.tmp, self.actions_port, self.env)
        if name == "rasa":
            return rasa_server(
                self.project,
                self.model,
                self.rasa_port,
                f"http://127.0.0.1:{self.actions_port}/webhook",
                tracker_db=self.db,
                env=self.env,
                token=self.token,
            )
        command = [
            sys.executable,
            "-m",
            "bot.web",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.web_port),
        ]
        return running(
            command, f"http://127.0.0.1:{self.web_port}/healthz", self.tmp, self.env, timeout=120
        )

    def start(self, name: str) -> None:
        server = self._server(name)
        server.__enter__()
        self._running[name] = server

    def stop(self, name: str) -> None:
        self._running.pop(name).__exit__(None, None, None)

    def start_all(self) -> None:
        for name in ("actions", "rasa", "web"):
            self.start(name)

    def stop_all(self) -> None:
        for name in list(self._running)[::-1]:
            self.stop(name)

    def tracker(self, sender_id: str) -> dict[str, Any]:
        url = f"{self.rasa_url}/conversations/{sender_id}/tracker?token={self.token}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def rest(self, sender: str, text: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.rasa_url}/webhooks/rest/webhook",
            json.dumps({"sender": sender, "message": text}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def wait_ticket(self, sender_id: str, timeout: float = 30) -> TicketView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ticket = self.repo.open_ticket_for(sender_id)
            if ticket is not None:
                return ticket
            time.sleep(0.1)
        raise AssertionError(f"no ticket opened for {sender_id} within {timeout} s")


class Customer:
    """A web chat customer on Rasa's socket.io channel (session persistence, reconnects)."""

    def __init__(self, rasa_url: str) -> None:
        self.session_id = uuid.uuid4().hex
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Condition()
        self.sio = socketio.Client(
            reconnection=True, reconnection_delay=0.5, reconnection_delay_max=2
        )
        self.sio.on("connect", self._joined)
        self.sio.on("bot_uttered", self._bot_uttered)
        self.confirmed = threading.Event()
        self.sio.on("session_confirm", lambda *_: self.confirmed.set())
        self.sio.connect(
            rasa_url, socketio_path="/socket.io", transports=["polling"], wait_timeout=30
        )
        assert self.confirmed.wait(15), "no session_confirm from Rasa"

    def _joined(self) -> None:
        self.confirmed.clear()
        self.sio.emit("session_request", {"session_id": self.session_id})

    def _bot_uttered(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.received.append((time.monotonic(), data))
            self._lock.notify_all()

    def say(self, text: str) -> float:
        sent = time.monotonic()
        self.sio.emit("user_uttered", {"message": text, "session_id": self.session_id})
        return sent

    def wait_for(
        self, predicate: Any, timeout: float = 30, since: int = 0
    ) -> tuple[float, dict[str, Any]]:
        """The first message (index ≥ `since`) matching `predicate`, with its arrival time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for arrived, data in self.received[since:]:
                    if predicate(data):
                        return arrived, data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    texts = [d.get("text") for _, d in self.received[since:]]
                    raise AssertionError(
                        f"customer did not receive the expected message; got {texts}"
                    )
                self._lock.wait(remaining)

    def close(self) -> None:
        self.sio.disconnect()


def text_is(expected: str) -> Any:
    return lambda data: data.get("text") == expected


def text_contains(part: str) -> Any:
    return lambda data: part in (data.get("text") or "")


__all__ = ["Customer", "Operator", "Stack", "text_contains", "text_is"]
