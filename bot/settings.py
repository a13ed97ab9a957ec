"""Runtime settings, read once from the environment (`FUSIONDESK_*`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        port = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} is not a port number; use e.g. {default}") from e
    if not 0 < port < 65536:
        raise ConfigError(f"{name}={port} is out of range 1–65535")
    return port


@dataclass(frozen=True)
class Settings:
    """Where the processes listen and where data lives."""

    #: Interface every server binds to (localhost by default: put a reverse proxy in front).
    host: str = "127.0.0.1"
    #: Rasa server (REST, socket.io and HTTP API).
    rasa_port: int = 5005
    #: rasa_sdk action server.
    actions_port: int = 5055
    #: Web chat page, widget assets and operator console.
    web_port: int = 8080
    #: SQLAlchemy URL of the bot's database (conversations, knowledge base, tickets).
    db_url: str = f"sqlite:///{PROJECT_ROOT / 'fusiondesk.db'}"
    #: Token the Rasa HTTP API requires (`--auth-token`); empty disables the API token.
    rasa_token: str = ""
    #: Folder with the trained models.
    models_dir: Path = PROJECT_ROOT / "models"

    @property
    def rasa_url(self) -> str:
        return f"http://{self.host}:{self.rasa_port}"

    @property
    def actions_url(self) -> str:
        return f"http://{self.host}:{self.actions_port}/webhook"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    @classmethod
    def from_env(cls) -> Settings:
        """Read `FUSIONDESK_HOST`, `FUSIONDESK_{RASA,ACTIONS,WEB}_PORT`, `FUSIONDESK_DB_URL`,
        `FUSIONDESK_RASA_TOKEN` and `FUSIONDESK_MODELS_DIR`."""
        defaults = cls()
        return cls(
            host=os.environ.get("FUSIONDESK_HOST", defaults.host),
            rasa_port=_port("FUSIONDESK_RASA_PORT", defaults.rasa_port),
            actions_port=_port("FUSIONDESK_ACTIONS_PORT", defaults.actions_port),
            web_port=_port("FUSIONDESK_WEB_PORT", defaults.web_port),
            db_url=os.environ.get("FUSIONDESK_DB_URL", defaults.db_url),
            rasa_token=os.environ.get("FUSIONDESK_RASA_TOKEN", defaults.rasa_token),
            models_dir=Path(os.environ.get("FUSIONDESK_MODELS_DIR", defaults.models_dir)),
        )
