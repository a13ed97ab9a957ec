"""The Telegram channel against a local Bot API stand-in.

Fast tests serve the channel's real Sanic blueprint on 127.0.0.1 with a collector in place of
Rasa's `on_new_message`; the slow tests run the real `rasa run` with the channel enabled in a
credentials file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rasa.core.channels.channel import UserMessage
from sanic import Sanic

from bot.channels.telegram import TelegramInput, TelegramOutput
from bot.channels.telegram_core import (
    CREDENTIALS_KEY,
    EDITED_TEXT,
    EXPIRED_BUTTON_TEXT,
    SECRET_HEADER,
    UNSUPPORTED_TEXT,
    WEBHOOK_PATH,
    TelegramConfigError,
)
from tests.channels.bot_api_stub import (
    CUSTOMER,
    SECRET,
    TOKEN,
    BotApiStub,
    bot_api_stub,
    callback_update,
    edited_update,
    my_chat_member_update,
    photo_update,
    sticker_update,
    text_update,
    voice_update,
)
from tests.support import action_server, child_env, free_port, rasa_server

CHAT = str(CUSTOMER["id"])


def make_channel(stub: BotApiStub, **overrides: Any) -> TelegramInput:
    credentials = {
        "access_token": TOKEN,
        "secret_token": SECRET,
        "webhook_url": "http://127.0.0.1:9/webhooks/telegram/webhook",
        "base_url": stub.base_url,
        **overrides,
    }
    return TelegramInput.from_credentials(credentials)


class RasaStandIn:
    """Collects what the channel hands to Rasa and answers like a bot would ("echo: ...")."""

    def __init__(self, fail_times: int = 0) -> None:
        self.messages: list[UserMessage] = []
        self.fail_times = fail_times

    async def __call__(self, message: UserMessage) -> None:
        self.messages.append(message)
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("the tracker store is down")
        await message.output_channel.send_text_message(message.sender_id, f"echo: {message.text}")

    @property
    def texts(self) -> list[str]:
        return [m.text or "" for m in self.messages]


@asynccontextmanager
async def serve(
    channel: TelegramInput,
    on_new_message: Callable[[UserMessage], Awaitable[Any]],
    port: int | None = None,
) -> AsyncIterator[str]:
    """Serve the channel's blueprint like `rasa run` does; yield the webhook URL."""
    app = Sanic(f"telegram_test_{uuid.uuid4().hex[:8]}", configure_logging=False)
    app.blueprint(channel.blueprint(on_new_message), url_prefix="/webhooks/telegram")
    port = port or free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        yield f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    finally:
        await server.before_stop()
        server.close()
        await server.wait_closed()
        await server.after_stop()


async def post(url: str, update: Any, secret: str | None = SECRET) -> httpx.Response:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            url, content=body, headers={**headers, "Content-Type": "application/json"}
        )


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture(autouse=True)
def sanic_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sanic 21.12 rewrites its request handler at each app's start-up; test mode lets several
    # apps start in one process
    monkeypatch.setattr(Sanic, "test_mode", True)


@pytest.fixture
def stub() -> Any:
    with bot_api_stub() as stub:
        yield stub


# -- webhook route -----------------------------------------------------------------------------


def test_a_text_message_reaches_rasa_and_the_reply_reaches_the_chat(stub: BotApiStub) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub), rasa) as url:
            answer = await post(url, text_update("my card has not arrived"))
            assert answer.status_code == 200

    run(scenario)
    [message] = rasa.messages
    assert (message.text, message.sender_id, message.input_channel) == (
        "my card has not arrived",
        CHAT,
        "telegram",
    )
    assert message.metadata["telegram"]["chat_id"] == CUSTOMER["id"]
    assert stub.called("sendChatAction")[0] == {"chat_id": CHAT, "action": "typing"}
    assert stub.called("sendMessage") == [
        {"chat_id": CHAT, "text": "echo: my card has not arrived"}
    ]
    methods = stub.methods()
    assert methods.index("sendChatAction") < methods.index("sendMessage")


def test_the_webhook_is_set_once_with_the_secret_when_the_server_starts(stub: BotApiStub) -> None:
    async def scenario() -> None:
        async with serve(make_channel(stub), RasaStandIn()):
            await stub.arrived("setWebhook")
            await asyncio.sleep(0.3)

    run(scenario)
    assert stub.called("setWebhook") == [
        {
            "url": "http://127.0.0.1:9/webhooks/telegram/webhook",
            "secret_token": SECRET,
            "allowed_updates": ["message", "edited_message", "callback_query"],
        }
    ]
    assert stub.methods()[:2] == ["getMe", "setWebhook"]


def test_polling_mode_sets_no_webhook(stub: BotApiStub) -> None:
    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling", webhook_url=""), RasaStandIn()):
            await stub.arrived("getMe")
            await asyncio.sleep(0.3)

    run(scenario)
    assert "setWebhook" not in stub.methods()


def test_the_webhook_is_retried_while_the_bot_api_is_down(stub: BotApiStub) -> None:
    stub.fail_next("setWebhook", 502, "Bad Gateway")

    async def scenario() -> None:
        async with serve(make_channel(stub), RasaStandIn()):
            await stub.arrived("setWebhook", count=2, timeout=10)

    run(scenario)
    assert stub.webhook_url.endswith("/webhooks/telegram/webhook")


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x", SECRET[:-1]])
def test_forged_calls_are_refused_and_nothing_is_sent(stub: BotApiStub, secret: str | None) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            await stub.arrived("getMe")
            answer = await post(url, text_update("hi"), secret=secret)
            assert answer.status_code == 403

    run(scenario)
    assert rasa.messages == []
    assert set(stub.methods()) <= {"getMe"}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"message": {"text": "no update id"}}',
        b'{"update_id": 1, "message": "a string"}',
        b'{"update_id": 2, "message": {"message_id": 1, "text": "no chat", "date": 1}}',
        b'{"update_id": 3, "callback_query": {"id": "1"}}',
    ],
)
def test_malformed_updates_are_a_400_and_the_channel_keeps_working(
    stub: BotApiStub, body: bytes
) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, body)).status_code == 400
            assert (await post(url, text_update("hello"))).status_code == 200

    run(scenario)
    assert rasa.texts == ["hello"]


@pytest.mark.parametrize(
    ("update", "reply"),
    [
        (edited_update("actually my card was stolen"), EDITED_TEXT),
        (sticker_update(), UNSUPPORTED_TEXT),
        (voice_update(), UNSUPPORTED_TEXT),
        (photo_update(), UNSUPPORTED_TEXT),
    ],
    ids=["edited", "sticker", "voice", "photo"],
)
def test_what_is_not_text_gets_a_polite_answer(stub: BotApiStub, update: dict, reply: str) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, update)).status_code == 200

    run(scenario)
    assert rasa.messages == []
    assert stub.called("sendMessage") == [{"chat_id": CHAT, "text": reply}]


def test_updates_without_a_chat_message_are_acknowledged_silently(stub: BotApiStub) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, my_chat_member_update())).status_code == 200

    run(scenario)
    assert rasa.messages == [] and "sendMessage" not in stub.methods()


def test_a_photo_with_a_caption_is_read(stub: BotApiStub) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, photo_update(caption="is this my card?"))).status_code == 200

    run(scenario)
    assert rasa.texts == ["is this my card?"]


def test_start_greets_and_restart_restarts(stub: BotApiStub) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            await post(url, text_update("/start"))
            await post(url, text_update("/restart"))

    run(scenario)
    assert rasa.texts == ["/greet", "/restart", "/greet"]


def test_a_button_press_sends_its_payload_and_answers_the_callback(stub: BotApiStub) -> None:
    rasa = RasaStandIn()

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, callback_update("/affirm", chat_id=555))).status_code == 200

    run(scenario)
    assert stub.called("answerCallbackQuery") == [{"callback_query_id": "4382bfdwdsb323b2d9"}]
    [message] = rasa.messages
    assert (message.text, message.sender_id) == ("/affirm", "555")
    assert stub.called("sendMessage") == [{"chat_id": "555", "text": "echo: /affirm"}]


def test_a_long_payload_button_round_trips_and_an_unknown_one_has_expired(
    stub: BotApiStub,
) -> None:
    rasa = RasaStandIn()
    payload = '/inform{"amount": "1500", "currency": "EUR", "recipient": "Ada Lovelace"}'

    async def scenario() -> None:
        channel = make_channel(stub, mode="polling")
        async with serve(channel, rasa) as url:
            await channel.get_output_channel().send_text_with_buttons(
                CHAT, "Send it?", [{"title": "Send", "payload": payload}]
            )
            [sent] = stub.called("sendMessage")
            data = sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            assert len(data.encode()) <= 64
            await post(url, callback_update(data))
            await post(url, callback_update("fd-cb:0000000000000000"))

    run(scenario)
    assert rasa.texts == [payload]
    assert stub.called("sendMessage")[-1] == {"chat_id": CHAT, "text": EXPIRED_BUTTON_TEXT}
    assert len(stub.called("answerCallbackQuery")) == 2


def test_telegram_redeliveries_are_handled_once(stub: BotApiStub) -> None:
    rasa = RasaStandIn()
    update = text_update("hello")

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, update)).status_code == 200
            again = await post(url, update)
            assert again.status_code == 200 and again.json() == {"status": "duplicate"}

    run(scenario)
    assert rasa.texts == ["hello"]


def test_a_failure_inside_rasa_is_a_500_so_telegram_delivers_again(stub: BotApiStub) -> None:
    rasa = RasaStandIn(fail_times=1)
    update = text_update("hello")

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, update)).status_code == 500
            assert (await post(url, update)).status_code == 200

    run(scenario)
    assert rasa.texts == ["hello", "hello"]
    assert stub.called("sendMessage") == [{"chat_id": CHAT, "text": "echo: hello"}]


def test_a_chat_that_blocked_the_bot_does_not_fail_the_update(stub: BotApiStub) -> None:
    rasa = RasaStandIn()
    stub.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            assert (await post(url, text_update("hello"))).status_code == 200

    run(scenario)
    assert rasa.texts == ["hello"]


def test_typing_is_refreshed_while_the_bot_works(
    stub: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.channels.telegram.TYPING_REFRESH_S", 0.1)

    async def slow_rasa(message: UserMessage) -> None:
        await asyncio.sleep(0.45)
        await message.output_channel.send_text_message(message.sender_id, "done")

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), slow_rasa) as url:
            await post(url, text_update("hello"))
            await asyncio.sleep(0.3)

    run(scenario)
    typing_calls = [m for m in stub.methods() if m == "sendChatAction"]
    assert 3 <= len(typing_calls) <= 7
    assert stub.methods()[-1] == "sendMessage"  # no typing after the answer


class _SlowTypingHandle:
    """Stands in for the Bot API handle: "typing…" takes a while to be answered."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def call(self, method: str, **params: Any) -> None:
        self.events.append(f"start {method}")
        if method == "send_chat_action":
            await asyncio.sleep(0.2)
        self.events.append(f"end {method}")


def test_an_answer_waits_for_a_typing_call_in_flight() -> None:
    """Telegram must never receive "typing…" after the answer (it would show for 5 s more)."""
    handle = _SlowTypingHandle()
    output = TelegramOutput(handle)  # type: ignore[arg-type]

    async def scenario() -> None:
        typing = asyncio.create_task(output.send_typing(CHAT))
        await asyncio.sleep(0.05)  # the typing call is in flight ...
        await output.send_text_message(str(CHAT), "done")  # ... when the answer is ready
        await typing

    asyncio.run(scenario())
    assert handle.events == [
        "start send_chat_action",
        "end send_chat_action",
        "start send_message",
        "end send_message",
    ]
    assert output.delivered == 1


def test_the_typing_refresher_skips_a_beat_after_each_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.channels.telegram.TYPING_REFRESH_S", 0.05)
    handle = _SlowTypingHandle()
    output = TelegramOutput(handle)  # type: ignore[arg-type]

    async def scenario() -> None:
        refresher = asyncio.create_task(TelegramInput._keep_typing(output, CHAT))
        await asyncio.sleep(0.02)
        await output.send_text_message(str(CHAT), "done")  # before the first beat
        await asyncio.sleep(0.06)  # the first beat passes: a message went out, no typing
        assert "start send_chat_action" not in handle.events
        await asyncio.sleep(0.1)  # still working later: typing again
        refresher.cancel()

    asyncio.run(scenario())
    assert handle.events[:2] == ["start send_message", "end send_message"]
    assert "start send_chat_action" in handle.events


def test_missing_secret_refuses_to_start() -> None:
    with pytest.raises(TelegramConfigError, match="TELEGRAM_SECRET"):
        TelegramInput.from_credentials(
            {"access_token": TOKEN, "webhook_url": "https://bot.example.com/hook"}
        )


# -- output channel ----------------------------------------------------------------------------


def test_buttons_become_an_inline_keyboard(stub: BotApiStub) -> None:
    async def scenario() -> None:
        output = make_channel(stub).get_output_channel()
        await output.send_response(
            CHAT,
            {
                "text": "Did that help?",
                "buttons": [
                    {"title": "Yes", "payload": "/affirm"},
                    {"title": "No", "payload": "/deny"},
                ],
            },
        )

    run(scenario)
    assert stub.called("sendMessage") == [
        {
            "chat_id": CHAT,
            "text": "Did that help?",
            "reply_markup": {
                "inline_keyboard": [
                    [
                        {"text": "Yes", "callback_data": "/affirm"},
                        {"text": "No", "callback_data": "/deny"},
                    ]
                ]
            },
        }
    ]


def test_long_text_is_split_and_buttons_go_under_the_last_part(stub: BotApiStub) -> None:
    paragraphs = ["Paragraph one. " * 200, "Paragraph two. " * 200, "Paragraph three. " * 150]
    text = "\n\n".join(p.strip() for p in paragraphs)

    async def scenario() -> None:
        output = make_channel(stub).get_output_channel()
        await output.send_text_with_buttons(CHAT, text, [{"title": "OK", "payload": "/affirm"}])

    run(scenario)
    sent = stub.called("sendMessage")
    assert [m["text"] for m in sent] == [p.strip() for p in paragraphs]
    assert all(len(m["text"]) <= 4096 for m in sent)
    assert ["reply_markup" in m for m in sent] == [False, False, True]


def test_images_are_sent_as_photos_or_as_a_link_when_telegram_cannot_fetch_them(
    stub: BotApiStub,
) -> None:
    image = "https://example.com/card.png"
    stub.fail_next("sendPhoto", 400, "Bad Request: wrong file identifier/HTTP URL specified")

    async def scenario() -> None:
        output = make_channel(stub).get_output_channel()
        await output.send_response(CHAT, {"text": "Here it is", "image": image})
        await output.send_response(CHAT, {"image": image})

    run(scenario)
    assert stub.called("sendPhoto") == [{"chat_id": CHAT, "photo": image}] * 2
    assert [m["text"] for m in stub.called("sendMessage")] == ["Here it is", image]


def test_a_pushed_agent_message_is_marked_as_human(stub: BotApiStub) -> None:
    """What Rasa does for `POST /conversations/{id}/tracker/events?execute_side_effects=true
    &output_channel=latest` with a BotUttered carrying the handoff metadata."""

    async def scenario() -> None:
        output = make_channel(stub).get_output_channel()
        assert isinstance(output, TelegramOutput)
        await output.send_response(
            CHAT,
            {
                "text": "I've blocked the card for you.",
                "timestamp": 1717171717.0,
                "from_human": True,
                "agent_name": "Anna",
            },
        )

    run(scenario)
    assert stub.called("sendMessage") == [
        {"chat_id": CHAT, "text": "👤 Anna (agent): I've blocked the card for you."}
    ]


def test_flood_control_is_waited_out(stub: BotApiStub) -> None:
    stub.fail_next(
        "sendMessage", 429, "Too Many Requests: retry after 1", parameters={"retry_after": 1}
    )

    async def scenario() -> None:
        await make_channel(stub).get_output_channel().send_text_message(CHAT, "hello")

    run(scenario)
    assert stub.called("sendMessage") == [{"chat_id": CHAT, "text": "hello"}] * 2


def test_custom_payloads_show_only_their_text(stub: BotApiStub) -> None:
    async def scenario() -> None:
        output = make_channel(stub).get_output_channel()
        await output.send_response(CHAT, {"custom": {"widget": "carousel"}})
        await output.send_response(CHAT, {"custom": {"text": "Plain words"}})

    run(scenario)
    assert stub.called("sendMessage") == [{"chat_id": CHAT, "text": "Plain words"}]


# -- secrets -----------------------------------------------------------------------------------


def test_the_token_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rasa = RasaStandIn()
    other_token = "5555555555:AAbadTokenThatTelegramRejects-0123456"

    async def scenario() -> None:
        with bot_api_stub() as good, bot_api_stub() as rejecting:
            # a working bot: every request URL (…/bot<TOKEN>/sendMessage) goes through httpx
            async with serve(make_channel(good), rasa) as url:
                await good.arrived("setWebhook")
                await post(url, text_update("hello"))
                await post(url, text_update("hello"), secret="forged")
            # a rejected token: python-telegram-bot's error repeats the token
            channel = make_channel(rejecting, access_token=other_token)
            async with serve(channel, rasa):
                await rejecting.arrived("getMe")
                await asyncio.sleep(0.3)

    run(scenario)
    assert rasa.texts == ["hello"]
    assert "Telegram rejected the bot token" in caplog.text
    assert TOKEN not in caplog.text and other_token not in caplog.text
    assert SECRET not in caplog.text


# -- end to end with the real Rasa server --------------------------------------------------------


def _credentials(path: Path, stub: BotApiStub, **block: Any) -> Path:
    content = {
        "rest": None,
        CREDENTIALS_KEY: {
            "access_token": TOKEN,
            "secret_token": SECRET,
            "base_url": stub.base_url,
            **block,
        },
    }
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def _greeting(project: Path) -> str:
    domain = yaml.safe_load((project / "domain.yml").read_text(encoding="utf-8"))
    return str(domain["responses"]["utter_greet"][0]["text"])


@pytest.mark.slow
@pytest.mark.integration
def test_end_to_end_webhook_with_rasa(fast_bot: tuple[Path, Path], tmp_path: Path) -> None:
    project, model = fast_bot
    rasa_port, actions_port = free_port(), free_port()
    chat = 31337
    with bot_api_stub() as stub:
        webhook = f"http://127.0.0.1:{rasa_port}{WEBHOOK_PATH}"
        credentials = _credentials(tmp_path / "credentials.yml", stub, webhook_url=webhook)
        with (
            action_server(project, actions_port) as action_url,
            rasa_server(
                project,
                model,
                rasa_port,
                action_url,
                tracker_db=tmp_path / "tracker.db",
                credentials=credentials,
                token="api-token",
            ) as rasa_url,
        ):
            [webhook_call] = stub.wait_for("setWebhook")
            assert webhook_call["url"] == webhook and webhook_call["secret_token"] == SECRET

            def send(update: dict, secret: str = SECRET) -> httpx.Response:
                return httpx.post(webhook, json=update, headers={SECRET_HEADER: secret}, timeout=60)

            # a greeting, as Telegram delivers it
            assert send(text_update("hi", chat_id=chat)).status_code == 200
            [reply] = stub.wait_for("sendMessage", where=lambda p: p["chat_id"] == str(chat))
            assert reply["text"] == _greeting(project)
            assert {"chat_id": str(chat), "action": "typing"} in stub.called("sendChatAction")

            # a forged call: refused, nothing sent
            before = len(stub.calls)
            assert send(text_update("hi", chat_id=chat), secret="forged").status_code == 403
            assert len(stub.calls) == before

            # buttons pushed through Rasa's API arrive as an inline keyboard; pressing one sends
            # its payload to Rasa, which answers
            events_url = (
                f"{rasa_url}/conversations/{chat}/tracker/events"
                "?execute_side_effects=true&output_channel=latest&token=api-token"
            )
            buttons = {
                "event": "bot",
                "text": "Did that answer your question?",
                "data": {"buttons": [{"title": "Yes", "payload": "/affirm"}]},
            }
            assert httpx.post(events_url, json=buttons, timeout=60).status_code == 200
            [keyboard] = stub.wait_for("sendMessage", where=lambda p: "reply_markup" in p)
            assert keyboard["reply_markup"] == {
                "inline_keyboard": [[{"text": "Yes", "callback_data": "/affirm"}]]
            }
            assert send(callback_update("/affirm", chat_id=chat)).status_code == 200
            stub.wait_for("answerCallbackQuery")
            stub.wait_for(
                "sendMessage",
                where=lambda p: p["text"] == "Is there anything else I can help you with?",
            )

            # a human agent's reply pushed later reaches the chat, marked as human
            agent = {
                "event": "bot",
                "text": "Hi, I'm Anna from the card team.",
                "metadata": {"from_human": True, "agent_name": "Anna"},
            }
            assert httpx.post(events_url, json=agent, timeout=60).status_code == 200
            stub.wait_for(
                "sendMessage",
                where=lambda p: p["text"] == "👤 Anna (agent): Hi, I'm Anna from the card team.",
            )
            assert all(p["chat_id"] == str(chat) for p in stub.called("sendMessage"))
            assert len(stub.called("setWebhook")) == 1


@pytest.mark.slow
@pytest.mark.integration
def test_end_to_end_polling_with_rasa(fast_bot: tuple[Path, Path], tmp_path: Path) -> None:
    """`fusiondesk telegram --polling` forwards updates to a Rasa server in polling mode."""
    import subprocess
    import sys

    project, model = fast_bot
    rasa_port, actions_port = free_port(), free_port()
    chat = 4242
    with bot_api_stub() as stub:
        credentials = _credentials(tmp_path / "credentials.yml", stub, mode="polling")
        with (
            action_server(project, actions_port) as action_url,
            rasa_server(project, model, rasa_port, action_url, credentials=credentials) as rasa_url,
        ):
            stub.wait_for("getMe")
            poller = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "telegram", "--polling",
                 "--credentials", str(credentials), "--rasa-url", rasa_url],
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            try:
                stub.queue_update(text_update("hi", chat_id=chat))
                [reply] = stub.wait_for(
                    "sendMessage", where=lambda p: p["chat_id"] == str(chat), timeout=60
                )
                assert reply["text"] == _greeting(project)
                assert "deleteWebhook" in stub.methods()
                assert "setWebhook" not in stub.methods()
                # the offset moves past the forwarded update: it is not delivered twice
                stub.wait_for("getUpdates", where=lambda p: int(p.get("offset") or 0) > 0)
            finally:
                poller.terminate()
                output, _ = poller.communicate(timeout=15)
            assert TOKEN not in output and SECRET not in output
        assert len(stub.called("sendMessage")) == 1
