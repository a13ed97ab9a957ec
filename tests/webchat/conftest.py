"""Real servers for the web chat tests: Rasa (with WebChatInput), actions, the web server.

One stack per test session, started on first use. The Rasa server can be stopped and started
again on the same port and SQLite tracker store, to test reconnecting after a restart.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.webchat_assets import install as install_webchat_assets
from tests.support import action_server, child_env, free_port, rasa_server, running

TOKEN = "webchat-test-token"

#: Channels of the test Rasa server: the web chat exactly as credentials.yml configures it.
CREDENTIALS: dict[str, Any] = {
    "rest": None,
    "bot.channels.webchat.WebChatInput": {
        "user_message_evt": "user_uttered",
        "bot_message_evt": "bot_uttered",
        "session_persistence": True,
    },
}


@dataclass
class RasaProcess:
    """The real Rasa server of the tests; `stop()` and `start()` keep port and tracker store."""

    project: Path
    model: Path
    port: int
    action_url: str
    tracker_db: Path
    credentials: Path
    _stack: ExitStack | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        stack = ExitStack()
        stack.enter_context(
            rasa_server(
                self.project,
                self.model,
                self.port,
                self.action_url,
                tracker_db=self.tracker_db,
                token=TOKEN,
                credentials=self.credentials,
            )
        )
        self._stack = stack

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def tracker(self, sender_id: str) -> dict[str, Any]:
        """The conversation's tracker from Rasa's HTTP API."""
        query = urllib.parse.urlencode({"token": TOKEN})
        with urllib.request.urlopen(
            f"{self.url}/conversations/{sender_id}/tracker?{query}", timeout=10
        ) as answer:
            return json.loads(answer.read())

    def push_agent_message(self, sender_id: str, text: str, agent_name: str) -> None:
        """Push a human agent's reply the way the handoff service does."""
        self.push_event(
            sender_id,
            {
                "event": "bot",
                "text": text,
                "metadata": {"from_human": True, "agent_name": agent_name},
            },
        )

    def push_event(self, sender_id: str, event: dict[str, Any]) -> None:
        """Append `event` and deliver it on the conversation's latest channel."""
        query = urllib.parse.urlencode(
            {"token": TOKEN, "execute_side_effects": "true", "output_channel": "latest"}
        )
        request = urllib.request.Request(
            f"{self.url}/conversations/{sender_id}/tracker/events?{query}",
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200


@dataclass
class WebChatStack:
    rasa: RasaProcess
    web_url: str


@pytest.fixture(scope="session")
def webchat_assets() -> Path:
    """socket.io-client installed where the web server serves it (npm ci when needed)."""
    install_webchat_assets(quiet=True)
    return Path(__file__).resolve().parents[2] / "bot" / "webchat" / "static" / "vendor"


@pytest.fixture(scope="session")
def webchat_stack(
    fast_bot: tuple[Path, Path],
    webchat_assets: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebChatStack]:
    """Rasa (WebChatInput, SQLite tracker store), the action server and the web server."""
    project, model = fast_bot
    work = tmp_path_factory.mktemp("webchat-stack")
    credentials = work / "credentials.yml"
    credentials.write_text(yaml.safe_dump(CREDENTIALS), encoding="utf-8")
    rasa_port, actions_port, web_port = free_port(), free_port(), free_port()
    with action_server(project, actions_port) as action_url:
        rasa = RasaProcess(project, model, rasa_port, action_url, work / "tracker.db", credentials)
        rasa.start()
        try:
            env = child_env(
                FUSIONDESK_HOST="127.0.0.1",
                FUSIONDESK_RASA_PORT=str(rasa_port),
                FUSIONDESK_RASA_TOKEN=TOKEN,
            )
            command = [sys.executable, "-m", "bot.web", "--port", str(web_port)]
            web_url = f"http://127.0.0.1:{web_port}"
            with running(command, f"{web_url}/healthz", work, env, timeout=60):
                yield WebChatStack(rasa, web_url)
        finally:
            rasa.stop()


def require_browser() -> str:
    """Path of Debian's chromium; skip without it, unless FUSIONDESK_REQUIRE_BROWSER is set."""
    path = "/usr/bin/chromium"
    if os.path.exists(path):
        return path
    message = "Debian's chromium is not installed (apt-get install -y chromium chromium-driver)"
    if os.environ.get("FUSIONDESK_REQUIRE_BROWSER"):
        pytest.fail(message + "; FUSIONDESK_REQUIRE_BROWSER is set, so this is an error")
    pytest.skip(message)
