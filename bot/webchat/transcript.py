"""The web chat's message shapes, with no Rasa or web-server imports.

One vocabulary shared by the socket.io channel (`bot.channels.webchat`), the history endpoint
(`bot.webchat.routes`) and the widget (`static/widget.js`):

- a *bot payload* is what the channel emits on the `bot_uttered` event, in the shapes Rasa's
  `SocketIOOutput` uses (`{"text"}`, `{"text", "quick_replies"}`, `{"attachment"}`), plus
  `"metadata": {"from_human": true, "agent_name": ...}` on a human agent's messages;
- a *transcript entry* is `{"role": "user", "text": ...}` or `{"role": "bot", "payload": ...}`:
  the widget keeps these in `localStorage` and the history endpoint rebuilds them from Rasa's
  tracker, so a reload shows the same conversation either way.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

#: Name of the web chat's Rasa input channel (kept as Rasa's own, so the socket.io path and
#: `output_channel=socketio` keep working); it is the `input_channel` of its user messages.
CHANNEL_NAME = "socketio"

#: Event the channel emits to the sending socket when Rasa has finished handling a message
#: (all replies sent): the widget hides its typing indicator.
TURN_COMPLETE_EVENT = "bot_turn_complete"

#: Session ids the widget may use: what `new_session_id()` makes (uuid4 hex). Anything else is
#: refused, so a browser cannot attach itself to another channel's conversation (a Telegram
#: chat id, a REST sender id).
SESSION_ID_RE = re.compile(r"^[0-9a-f]{32}$")

#: Longest message text the channel passes to Rasa (the widget's input allows 2,000).
MAX_MESSAGE_CHARS = 10_000

#: Longest agent name shown in the widget.
MAX_AGENT_NAME_CHARS = 80

#: Default shown when a human agent's message carries no name.
DEFAULT_AGENT_NAME = "Agent"

#: Key of the widget's own data inside a user message's metadata.
WEBCHAT_METADATA_KEY = "webchat"

#: Most transcript entries the history endpoint returns (the newest ones).
MAX_HISTORY_ENTRIES = 200


def new_session_id() -> str:
    """A fresh, unguessable session id (the conversation's Rasa sender id)."""
    return uuid.uuid4().hex


def is_valid_session_id(value: object) -> bool:
    """Whether `value` is a session id the web chat accepts."""
    return isinstance(value, str) and SESSION_ID_RE.fullmatch(value) is not None


def human_marker(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `metadata` marking a human agent's message, or None for the bot's own messages.

    `fields` are the keyword arguments Rasa passes to an output channel: the `metadata` of a
    `BotUttered` event merged into the message (`{"from_human": true, "agent_name": "Alice"}`).
    """
    if fields.get("from_human") is not True:
        return None
    name = fields.get("agent_name")
    name = " ".join(name.split())[:MAX_AGENT_NAME_CHARS] if isinstance(name, str) else ""
    return {"from_human": True, "agent_name": name or DEFAULT_AGENT_NAME}


def text_parts(text: str) -> list[str]:
    """Split a message into the bubbles `SocketIOOutput` sends (blank-line separated)."""
    return [part for part in text.strip().split("\n\n") if part.strip()] or [text]


def bot_payloads(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The bot payloads the channel emitted for a tracker `bot` event (as a JSON dict).

    Mirrors `OutputChannel.send_response` and `SocketIOOutput`: text split into bubbles,
    buttons and quick replies attached to the last bubble, then image and attachment.
    """
    data = event.get("data") or {}
    metadata = event.get("metadata") or {}
    marker = human_marker(metadata) if isinstance(metadata, Mapping) else None
    payloads: list[dict[str, Any]] = []
    text = event.get("text")
    buttons = data.get("quick_replies") or data.get("buttons") or []
    if isinstance(text, str) and text.strip():
        payloads = [{"text": part} for part in text_parts(text)]
        if buttons:
            payloads[-1]["quick_replies"] = [
                {"content_type": "text", "title": b.get("title"), "payload": b.get("payload")}
                for b in buttons
                if isinstance(b, Mapping)
            ]
    image = data.get("image")
    if isinstance(image, str) and image:
        payloads.append({"attachment": {"type": "image", "payload": {"src": image}}})
    attachment = data.get("attachment")
    if attachment and attachment != image:
        payloads.append({"attachment": attachment})
    if marker:
        for payload in payloads:
            payload["metadata"] = dict(marker)
    return payloads


def user_entry(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The transcript entry for a tracker `user` event, or None when the widget hid it.

    The widget sends a button's payload with `{"webchat": {"display": title}}` and the
    initial payload with `{"webchat": {"hidden": true}}` in the message metadata.
    """
    text = event.get("text")
    if not isinstance(text, str):
        return None
    metadata = event.get("metadata") or {}
    own = metadata.get(WEBCHAT_METADATA_KEY) if isinstance(metadata, Mapping) else None
    if isinstance(own, Mapping):
        if own.get("hidden") is True:
            return None
        display = own.get("display")
        if isinstance(display, str) and display:
            text = display
    return {"role": "user", "text": text}


def transcript(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Transcript entries for a conversation's tracker events (since its last restart).

    Returns at most `MAX_HISTORY_ENTRIES`, the newest ones.
    """
    entries: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("event")
        if kind == "restart":
            entries = []
        elif kind == "user":
            entry = user_entry(event)
            if entry:
                entries.append(entry)
        elif kind == "bot":
            entries.extend({"role": "bot", "payload": p} for p in bot_payloads(event))
    return entries[-MAX_HISTORY_ENTRIES:]


def is_webchat_conversation(events: Iterable[Mapping[str, Any]], channel: str) -> bool:
    """Whether every customer message of a conversation came through the web chat `channel`.

    The history endpoint serves only such conversations; one with no customer message yet
    (nothing to show) counts as a web chat conversation.
    """
    return all(
        event.get("input_channel") in (channel, None)
        for event in events
        if event.get("event") == "user"
    )


def parse_metadata(raw: object) -> dict[str, Any]:
    """A client's message metadata as a dict; anything malformed becomes `{}`."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, Mapping) else {}
