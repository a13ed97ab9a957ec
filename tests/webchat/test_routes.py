"""The web server's web chat routes: demo page, assets, history endpoint."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from email.message import Message
from types import SimpleNamespace
from typing import Any

import pytest

from bot.settings import Settings
from bot.webchat.errors import HistoryUnavailableError
from bot.webchat.routes import (
    PUBLIC_RASA_URL_ENV,
    demo_page,
    embed_tag,
    fetch_events,
    public_rasa_url,
)
from bot.webchat.transcript import new_session_id
from tests.support import free_port
from tests.webchat.conftest import WebChatStack


def get(url: str) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=15) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_embed_tag_escapes_option_values() -> None:
    tag = embed_tag("http://h:8080/webchat/widget.js", "http://h:5005", {"title": 'Say "hi" <now>'})
    assert tag == (
        '<script src="http://h:8080/webchat/widget.js" data-server-url="http://h:5005" '
        'data-title="Say &quot;hi&quot; &lt;now&gt;"></script>'
    )


def test_demo_page_embeds_the_tag_and_shows_it_as_text() -> None:
    page = demo_page(
        "http://h/webchat/widget.js", "http://h:5005", "<pre>__EMBED_SNIPPET__</pre>__EMBED_TAG__"
    )
    shown, embedded = page.split("</pre>")
    assert shown.startswith("<pre>&lt;script src=")
    assert embedded.startswith('<script src="http://h/webchat/widget.js"')
    assert 'data-initial-payload="/greet"' in embedded


def test_public_rasa_url_follows_the_host_the_browser_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PUBLIC_RASA_URL_ENV, raising=False)
    settings = Settings(rasa_port=5123)
    request: Any = SimpleNamespace(host="chat.example.com:8080", scheme="https")
    assert public_rasa_url(request, settings) == "https://chat.example.com:5123"
    request = SimpleNamespace(host="[::1]:8080", scheme="http")
    assert public_rasa_url(request, settings) == "http://[::1]:5123"
    monkeypatch.setenv(PUBLIC_RASA_URL_ENV, "https://bot.example.com/")
    assert public_rasa_url(request, settings) == "https://bot.example.com"


def test_history_from_an_unreachable_rasa_is_an_error_not_a_crash() -> None:
    settings = Settings(rasa_port=free_port(), rasa_token="secret-token")
    with pytest.raises(HistoryUnavailableError, match="not reachable") as info:
        asyncio.run(fetch_events(settings, new_session_id()))
    assert "secret-token" not in str(info.value)


@pytest.mark.slow
@pytest.mark.integration
def test_only_listed_assets_are_served(webchat_stack: WebChatStack) -> None:
    base = webchat_stack.web_url
    status, headers, body = get(f"{base}/webchat/widget.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"FusionDeskChat" in body
    status, _, body = get(f"{base}/webchat/vendor/socket.io.min.js")
    assert status == 200 and b"Socket.IO v4." in body[:200]
    status, headers, _ = get(f"{base}/webchat/widget.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    for name in ("index.html", "../routes.py", "vendor/.package-lock.sha256", "%2e%2e/routes.py"):
        assert get(f"{base}/webchat/{name}")[0] == 404, name


@pytest.mark.slow
@pytest.mark.integration
def test_history_serves_web_chat_sessions_only(webchat_stack: WebChatStack) -> None:
    base, rasa = webchat_stack.web_url, webchat_stack.rasa
    assert get(f"{base}/webchat/history/not-a-session")[0] == 404
    # A conversation of another channel (REST here; Telegram alike) is not given out,
    # even under an id that looks like a web chat session.
    foreign = new_session_id()
    request = urllib.request.Request(
        f"{rasa.url}/webhooks/rest/webhook",
        data=json.dumps({"sender": foreign, "message": "hi"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200
    status, headers, _ = get(f"{base}/webchat/history/{foreign}")
    assert status == 404
    assert headers["Access-Control-Allow-Origin"] == "*"
    # An agent's message pushed into a fresh web chat session comes back marked.
    session = new_session_id()
    rasa.push_agent_message(session, "Hello from Alice", "Alice")
    status, headers, body = get(f"{base}/webchat/history/{session}")
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(body)["messages"] == [
        {
            "role": "bot",
            "payload": {
                "text": "Hello from Alice",
                "metadata": {"from_human": True, "agent_name": "Alice"},
            },
        }
    ]
