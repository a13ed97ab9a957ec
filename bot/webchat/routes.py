"""Web routes of the chat widget: the demo page, the widget's assets and its history endpoint.

- `GET /` — a demo page that embeds the widget with one `<script>` tag, as a customer's site
  would, and shows that tag for copying.
- `GET /webchat/widget.js`, `/webchat/widget.css`, `/webchat/vendor/socket.io.min.js` — the
  widget and socket.io-client (installed by `python -m bot.webchat_assets`).
- `GET /webchat/history/<session_id>` — the conversation of a web chat session as transcript
  entries, read from Rasa's tracker with the server's API token, so a reload (or a customer who
  comes back later) sees everything, agents' replies included. Only web chat sessions are
  served; the session id itself (128 random bits, known only to that browser) is the key.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.settings import Settings
from bot.webchat.errors import HistoryUnavailableError
from bot.webchat.transcript import (
    CHANNEL_NAME,
    is_valid_session_id,
    is_webchat_conversation,
    transcript,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Environment variable with the Rasa URL browsers use, when it differs from "this host, the
#: Rasa port" (e.g. behind a reverse proxy: https://chat.example.com).
PUBLIC_RASA_URL_ENV = "FUSIONDESK_PUBLIC_RASA_URL"

#: Assets served under /webchat/ (name → content type); nothing else in static/ is reachable.
ASSETS: dict[str, str] = {
    "widget.js": "text/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
    "vendor/socket.io.min.js": "text/javascript; charset=utf-8",
    "vendor/socket.io.min.js.map": "application/json",
}

#: Options the demo page passes to the widget (besides the server URL).
DEMO_OPTIONS: dict[str, str] = {
    "title": "FusionDesk assistant",
    "primary-color": "#1f5fbf",
    "initial-payload": "/greet",
}

HISTORY_TIMEOUT_S = 5.0

_CORS = {"Access-Control-Allow-Origin": "*"}


def public_rasa_url(request: Request, settings: Settings) -> str:
    """The Rasa URL a browser that reached this page should use."""
    configured = os.environ.get(PUBLIC_RASA_URL_ENV, "").strip()
    if configured:
        return configured.rstrip("/")
    hostname = urlsplit(f"//{request.host}").hostname or settings.host
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    return f"{request.scheme}://{hostname}:{settings.rasa_port}"


def embed_tag(widget_url: str, server_url: str, options: dict[str, str]) -> str:
    """The `<script>` tag that embeds the widget, attribute values HTML-escaped."""
    attributes = [
        f'src="{html.escape(widget_url)}"',
        f'data-server-url="{html.escape(server_url)}"',
    ]
    attributes += [f'data-{name}="{html.escape(value)}"' for name, value in options.items()]
    return f"<script {' '.join(attributes)}></script>"


def demo_page(widget_url: str, server_url: str, template: str) -> str:
    """The demo page: the template with the embed tag in place and shown as text."""
    tag = embed_tag(widget_url, server_url, DEMO_OPTIONS)
    return template.replace("__EMBED_SNIPPET__", html.escape(tag)).replace("__EMBED_TAG__", tag)


async def fetch_events(settings: Settings, session_id: str) -> list[dict[str, Any]]:
    """The events of conversation `session_id` (since its last restart) from the Rasa server.

    Raises:
        HistoryUnavailableError: Rasa is unreachable or answered with an error.
    """
    url = f"{settings.rasa_url}/conversations/{quote(session_id, safe='')}/tracker"
    params = {"include_events": "AFTER_RESTART"}
    if settings.rasa_token:
        params["token"] = settings.rasa_token
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HISTORY_TIMEOUT_S)) as http,
            http.get(url, params=params) as answer,
        ):
            if answer.status != 200:
                raise HistoryUnavailableError(
                    f"the Rasa server answered {answer.status} for a conversation's history"
                    + (" (check FUSIONDESK_RASA_TOKEN)" if answer.status in (401, 403) else "")
                )
            state = await answer.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
        # Never log the URL: its query string carries the API token.
        raise HistoryUnavailableError(
            f"the Rasa server at {settings.rasa_url} is not reachable ({type(e).__name__})"
        ) from e
    events = state.get("events") if isinstance(state, dict) else None
    return [e for e in events or [] if isinstance(e, dict)]


def webchat_blueprint(settings: Settings) -> Blueprint:
    """The demo page, the widget's assets and the history endpoint, for the web server."""
    bp = Blueprint("webchat")
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if not (STATIC_DIR / "vendor" / "socket.io.min.js").is_file():
        logger.warning(
            "The web chat's socket.io client is not installed, so the widget cannot connect: "
            "run `make install` (or `python -m bot.webchat_assets`)."
        )

    @bp.get("/")
    async def demo(request: Request) -> HTTPResponse:
        widget_url = f"{request.scheme}://{request.host}/webchat/widget.js"
        page = demo_page(widget_url, public_rasa_url(request, settings), template)
        return response.html(page, headers={"Cache-Control": "no-cache"})

    @bp.route("/webchat/<name:path>", methods=["GET", "HEAD"])
    async def asset(request: Request, name: str) -> HTTPResponse:
        content_type = ASSETS.get(name)
        if content_type is None:
            return response.json({"error": f"no such web chat asset: {name}"}, status=404)
        path = STATIC_DIR / name
        if not path.is_file():
            return response.json(
                {
                    "error": f"{name} is not installed: run `make install` "
                    "(or `python -m bot.webchat_assets`) and restart the web server"
                },
                status=503,
            )
        caching = "public, max-age=86400" if name.startswith("vendor/") else "no-cache"
        return await response.file(
            path, mime_type=content_type, headers={**_CORS, "Cache-Control": caching}
        )

    @bp.get("/webchat/history/<session_id:str>")
    async def history(request: Request, session_id: str) -> HTTPResponse:
        headers = {**_CORS, "Cache-Control": "no-store"}
        if not is_valid_session_id(session_id):
            return response.json({"error": "unknown session"}, status=404, headers=headers)
        try:
            events = await fetch_events(settings, session_id)
        except HistoryUnavailableError as e:
            logger.warning("Web chat history unavailable: %s", e)
            return response.json({"error": str(e)}, status=502, headers=headers)
        if not is_webchat_conversation(events, CHANNEL_NAME):
            return response.json({"error": "unknown session"}, status=404, headers=headers)
        return response.json(
            {"session_id": session_id, "messages": transcript(events)}, headers=headers
        )

    return bp
