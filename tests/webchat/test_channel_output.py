"""WebChatOutput's messages, as Rasa's `send_response` drives it, recorded at the socket server."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.channels.webchat import WebChatInput, WebChatOutput


class RecordingServer:
    """Stands in for python-socketio's AsyncServer: records `emit` calls."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, Any, str]] = []

    async def emit(self, event: str, data: Any = None, room: str = "", **_: Any) -> None:
        self.emitted.append((event, data, room))


def send(message: dict[str, Any]) -> list[tuple[str, Any, str]]:
    server = RecordingServer()
    output = WebChatOutput(server, "bot_uttered")  # type: ignore[arg-type]
    asyncio.run(output.send_response("0" * 32, message))
    return server.emitted


AGENT = {"from_human": True, "agent_name": "Alice"}


def test_agent_text_is_marked_per_bubble() -> None:
    emitted = send({"text": "Hi!\n\nI'm Alice.", "timestamp": 1.0, **AGENT})
    assert emitted == [
        ("bot_uttered", {"text": "Hi!", "metadata": AGENT}, "0" * 32),
        ("bot_uttered", {"text": "I'm Alice.", "metadata": AGENT}, "0" * 32),
    ]


def test_agent_buttons_and_image_are_marked_too() -> None:
    buttons = [{"title": "Yes", "payload": "/affirm"}]
    emitted = send({"text": "Shall I?", "buttons": buttons, "image": "https://x/y.png", **AGENT})
    assert [data for _, data, _ in emitted] == [
        {
            "text": "Shall I?",
            "quick_replies": [{"content_type": "text", "title": "Yes", "payload": "/affirm"}],
            "metadata": AGENT,
        },
        {"attachment": {"type": "image", "payload": {"src": "https://x/y.png"}}, "metadata": AGENT},
    ]


def test_the_bots_own_messages_are_not_marked() -> None:
    emitted = send({"text": "Hello", "timestamp": 1.0, "from_human": "yes"})
    assert emitted == [("bot_uttered", {"text": "Hello"}, "0" * 32)]


def test_the_channel_keeps_rasas_name_and_settings() -> None:
    channel = WebChatInput.from_credentials(
        {
            "user_message_evt": "user_uttered",
            "bot_message_evt": "bot_uttered",
            "session_persistence": True,
        }
    )
    assert WebChatInput.name() == "socketio"
    assert isinstance(channel, WebChatInput)
    assert channel.session_persistence is True
    assert channel.socketio_path == "/socket.io"
    assert channel.get_output_channel() is None  # no socket server before `blueprint()`
