"""WebChatInput in the real Rasa server, driven by python-socketio's own client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from bot.webchat.transcript import TURN_COMPLETE_EVENT, is_valid_session_id
from tests.webchat.conftest import WebChatStack

pytestmark = [pytest.mark.slow, pytest.mark.integration]

GREETING = "Hello! I'm the FusionDesk assistant"


class Client:
    """A socket.io client that records what the server sends it."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for name in ("session_confirm", "bot_uttered", TURN_COMPLETE_EVENT):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str):  # noqa: ANN202 - a socket.io handler
        async def record(data: Any = None) -> None:
            await self.events.put((name, data))

        return record

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, socketio_path="/socket.io", transports=["polling"])

    async def next(self, name: str, timeout: float = 30) -> Any:
        """The data of the next `name` event (others before it are dropped)."""
        while True:
            event, data = await asyncio.wait_for(self.events.get(), timeout)
            if event == name:
                return data

    async def until_turn_complete(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Bot messages up to the end of the current turn."""
        messages = []
        while True:
            event, data = await asyncio.wait_for(self.events.get(), timeout)
            if event == "bot_uttered":
                messages.append(data)
            elif event == TURN_COMPLETE_EVENT:
                return messages

    async def close(self) -> None:
        """Disconnect without waiting for the pending long-poll request to time out."""
        await self.sio.eio.disconnect(abort=True)

    async def session(self, session_id: str | None) -> str:
        await self.sio.emit("session_request", {"session_id": session_id})
        return await self.next("session_confirm")

    async def say(self, text: str, session_id: str | None = None, **extra: Any) -> None:
        await self.sio.emit("user_uttered", {"message": text, "session_id": session_id, **extra})


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 180))


def test_a_session_gets_replies_in_its_room_and_turns_end(webchat_stack: WebChatStack) -> None:
    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        client = Client()
        await client.connect(webchat_stack.rasa.url)
        try:
            session_id = await client.session(None)
            await client.say("hi", session_id)
            return session_id, await client.until_turn_complete()
        finally:
            await client.close()

    session_id, replies = run(scenario())
    assert is_valid_session_id(session_id)
    # Rasa 3.6's own channel never joins the room (un-awaited enter_room), so no reply
    # would arrive at all; ours delivers the greeting to the session's room.
    assert [r["text"] for r in replies if "text" in r][0].startswith(GREETING)
    tracker = webchat_stack.rasa.tracker(session_id)
    assert tracker["latest_message"]["text"] == "hi"
    assert tracker["latest_input_channel"] == "socketio"


def test_malformed_or_foreign_session_ids_get_a_fresh_session(
    webchat_stack: WebChatStack,
) -> None:
    async def scenario() -> list[str]:
        client = Client()
        await client.connect(webchat_stack.rasa.url)
        try:
            # A Telegram chat id, a REST sender id, an injection attempt, a non-string.
            return [await client.session(claimed) for claimed in ("123456789", "alice", "../x")]
        finally:
            await client.close()

    confirmed = run(scenario())
    assert all(is_valid_session_id(s) for s in confirmed)
    assert not {"123456789", "alice", "../x"} & set(confirmed)


def test_a_second_socket_resumes_the_session_and_receives_agent_messages(
    webchat_stack: WebChatStack,
) -> None:
    rasa = webchat_stack.rasa

    async def scenario() -> tuple[str, dict[str, Any], dict[str, Any]]:
        first, second = Client(), Client()
        await first.connect(rasa.url)
        session_id = await first.session(None)
        await first.say("hi", session_id)
        await first.until_turn_complete()
        await first.close()
        # "Reload": a new socket asks for the same session.
        await second.connect(rasa.url)
        try:
            assert await second.session(session_id) == session_id
            await asyncio.get_running_loop().run_in_executor(
                None, rasa.push_agent_message, session_id, "Hi, Alice here. <b>Hello</b>", "Alice"
            )
            agent = await second.next("bot_uttered")
            await second.say("thanks", session_id)
            reply = (await second.until_turn_complete())[0]
            return session_id, agent, reply
        finally:
            await second.close()

    session_id, agent, reply = run(scenario())
    assert agent == {
        "text": "Hi, Alice here. <b>Hello</b>",
        "metadata": {"from_human": True, "agent_name": "Alice"},
    }
    assert "metadata" not in reply  # the bot's own messages are not marked
    texts = [e.get("text") for e in rasa.tracker(session_id)["events"] if e["event"] == "user"]
    assert texts == ["hi", "thanks"]


def test_bad_messages_are_ignored_without_breaking_the_socket(webchat_stack: WebChatStack) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        client = Client()
        await client.connect(webchat_stack.rasa.url)
        try:
            # Before any session: a message naming no valid session is dropped.
            await client.sio.emit("user_uttered", {"message": "hi", "session_id": "123"})
            await client.sio.emit("user_uttered", "not an object")
            await client.sio.emit("user_uttered", {"message": 42})
            session_id = await client.session(None)
            await client.say("hi", session_id, metadata="{not json")
            greeting = await client.until_turn_complete()
            await client.say("x" * 10_001, session_id)
            too_long = await client.until_turn_complete()
            return greeting, too_long
        finally:
            await client.close()

    greeting, too_long = run(scenario())
    assert greeting[0]["text"].startswith(GREETING)
    assert too_long == [{"text": too_long[0]["text"]}]
    assert "too long" in too_long[0]["text"]


def test_a_socket_that_skipped_session_request_may_name_its_session(
    webchat_stack: WebChatStack,
) -> None:
    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        first, second = Client(), Client()
        await first.connect(webchat_stack.rasa.url)
        session_id = await first.session(None)
        await first.close()
        await second.connect(webchat_stack.rasa.url)
        try:
            # e.g. a message buffered by the client while it reconnected
            await second.say("hi", session_id)
            return session_id, await second.until_turn_complete()
        finally:
            await second.close()

    session_id, replies = run(scenario())
    assert replies[0]["text"].startswith(GREETING)
    assert webchat_stack.rasa.tracker(session_id)["latest_message"]["text"] == "hi"
