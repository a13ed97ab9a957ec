"""The web chat widget's Rasa channel: Rasa's socket.io channel, fixed and extended.

Referenced from `credentials.yml` as `bot.channels.webchat.WebChatInput` with the settings of
Rasa's `socketio` channel. It keeps Rasa's channel name (`socketio`) and path (`/socket.io`),
so any Rasa socket.io client still works. What it changes, and why:

- **Rooms are really joined.** Rasa 3.6 calls `AsyncServer.enter_room` without `await`; in
  python-socketio 5.x that is a coroutine, so with `session_persistence` the socket never joined
  its session's room and every reply (sent to that room) reached nobody.
- **Session ids are checked.** A client may resume only a web chat session id (32 hex digits);
  anything else gets a fresh session, so a browser cannot write into, or listen to, a Telegram or
  REST conversation by claiming its sender id. A socket speaks only for the session it joined.
- **Human agents' messages are marked.** Rasa's output channel drops keyword arguments; ours
  emits `{"text": ..., "metadata": {"from_human": true, "agent_name": ...}}` for a `BotUttered`
  whose metadata says so (pushed through `POST /conversations/{id}/tracker/events?
  execute_side_effects=true&output_channel=latest`).
- **The widget learns when a turn is over** (`bot_turn_complete`), to hide its typing indicator.
- Malformed messages (not a dict, text not a string, metadata not an object) are ignored with a
  log line instead of raising inside the socket server; over-long ones get a polite reply.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import OutputChannel, UserMessage, decode_bearer_token
from rasa.core.channels.socketio import SocketBlueprint, SocketIOInput, SocketIOOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio import AsyncServer

from bot.webchat.transcript import (
    CHANNEL_NAME,
    MAX_MESSAGE_CHARS,
    TURN_COMPLETE_EVENT,
    human_marker,
    is_valid_session_id,
    new_session_id,
    parse_metadata,
    text_parts,
)

logger = logging.getLogger(__name__)

TOO_LONG_TEXT = (
    f"Sorry, that message is too long for me (more than {MAX_MESSAGE_CHARS:,} characters). "
    "Could you send it in shorter parts?"
)


def _marked(message: dict[str, Any], marker: dict[str, Any] | None) -> dict[str, Any]:
    if marker:
        message["metadata"] = dict(marker)
    return message


class WebChatOutput(SocketIOOutput):
    """Rasa's socket.io output, plus the human-agent marker on every kind of message."""

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Send text, one bubble per blank-line separated part."""
        marker = human_marker(kwargs)
        for part in text_parts(text):
            await self._send_message(recipient_id, _marked({"text": part}, marker))

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        """Send text with buttons (as quick replies on its last bubble)."""
        marker = human_marker(kwargs)
        messages: list[dict[str, Any]] = [{"text": part} for part in text_parts(text)]
        messages[-1]["quick_replies"] = [
            {"content_type": "text", "title": button["title"], "payload": button["payload"]}
            for button in buttons
        ]
        for message in messages:
            await self._send_message(recipient_id, _marked(message, marker))

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """Send an image by URL."""
        message = {"attachment": {"type": "image", "payload": {"src": image}}}
        await self._send_message(recipient_id, _marked(message, human_marker(kwargs)))

    async def send_attachment(  # type: ignore[override]
        self, recipient_id: str, attachment: dict[str, Any], **kwargs: Any
    ) -> None:
        """Send an attachment."""
        message = {"attachment": attachment}
        await self._send_message(recipient_id, _marked(message, human_marker(kwargs)))


class WebChatInput(SocketIOInput):
    """Rasa's socket.io input channel with joined rooms, checked session ids and agent marks."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    def get_output_channel(self) -> OutputChannel | None:
        """The output channel for messages pushed later (e.g. a human agent's reply).

        With `session_persistence` the socket of each session is in the room named by the
        session id, which is the conversation's sender id: that is where these go.
        """
        if self.sio is None:
            logger.warning(
                "The web chat output channel is not ready (no socket server in this process); "
                "messages pushed to web chat conversations cannot be delivered."
            )
            return None
        return WebChatOutput(self.sio, self.bot_message_evt)

    async def _join(self, sio: AsyncServer, sid: str, session_id: str) -> None:
        """Put socket `sid` into the room of `session_id` (leaving its previous one)."""
        session = await sio.get_session(sid, namespace=self.namespace)
        previous = session.get("session_id")
        if self.session_persistence:
            if previous and previous != session_id:
                await sio.leave_room(sid, previous, namespace=self.namespace)
            await sio.enter_room(sid, session_id, namespace=self.namespace)
        await sio.save_session(sid, {"session_id": session_id}, namespace=self.namespace)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The socket.io server, attached to Rasa's Sanic app at `socketio_path`."""
        # `cors_allowed_origins=[]` leaves CORS to Rasa's `--cors` (as Rasa's own channel does).
        sio = AsyncServer(async_mode="sanic", cors_allowed_origins=[])
        socketio_webhook = SocketBlueprint(sio, self.socketio_path, "socketio_webhook", __name__)
        self.sio = sio
        namespace = self.namespace

        @socketio_webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @sio.on("connect", namespace=namespace)
        async def connect(sid: str, environ: dict, auth: dict | None = None) -> bool:
            if not self.jwt_key:
                return True
            token = auth.get("token") if isinstance(auth, dict) else None
            return bool(token and decode_bearer_token(token, self.jwt_key, self.jwt_algorithm))

        @sio.on("session_request", namespace=namespace)
        async def session_request(sid: str, data: object = None) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            if is_valid_session_id(requested):
                session_id = str(requested)
            else:
                if requested:
                    logger.info("Web chat: refused a malformed session id; starting a new one.")
                session_id = new_session_id()
            await self._join(sio, sid, session_id)
            await sio.emit("session_confirm", session_id, room=sid, namespace=namespace)

        @sio.on(self.user_message_evt, namespace=namespace)
        async def handle_message(sid: str, data: object = None) -> None:
            if not isinstance(data, dict) or not isinstance(data.get("message"), str):
                logger.warning("Web chat: ignored a message without text from socket %s.", sid)
                return
            text: str = data["message"]
            if not text.strip():
                return
            if self.session_persistence:
                session = await sio.get_session(sid, namespace=namespace)
                sender_id = session.get("session_id")
                if sender_id is None:
                    # A client that sent before `session_request` (e.g. right after a
                    # reconnect) may name its session in the message, as Rasa's protocol allows.
                    claimed = data.get("session_id")
                    if not is_valid_session_id(claimed):
                        logger.warning(
                            "Web chat: ignored a message from socket %s without a valid "
                            "session; the client must send `session_request` first.",
                            sid,
                        )
                        return
                    sender_id = str(claimed)
                    await self._join(sio, sid, sender_id)
            else:
                sender_id = sid
            output_channel = WebChatOutput(sio, self.bot_message_evt)
            try:
                if len(text) > MAX_MESSAGE_CHARS:
                    await output_channel.send_text_message(sender_id, TOO_LONG_TEXT)
                    return
                message = UserMessage(
                    text,
                    output_channel,
                    sender_id,
                    input_channel=self.name(),
                    metadata=parse_metadata(data.get(self.metadata_key)),
                )
                await on_new_message(message)
            finally:
                await sio.emit(TURN_COMPLETE_EVENT, {}, room=sid, namespace=namespace)

        return socketio_webhook
