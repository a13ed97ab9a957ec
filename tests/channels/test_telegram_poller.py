"""`fusiondesk telegram --polling`: getUpdates from the Bot API stand-in, forwarded to the
channel's real webhook route."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from sanic import Sanic

from bot.channels.telegram_cli import polling_requested
from bot.channels.telegram_core import CREDENTIALS_KEY, TelegramConfig, TelegramConfigError
from bot.channels.telegram_poller import TelegramPoller
from bot.cli import main
from tests.channels.bot_api_stub import (
    CUSTOMER,
    SECRET,
    TOKEN,
    BotApiStub,
    bot_api_stub,
    text_update,
)
from tests.channels.test_telegram import RasaStandIn, make_channel, serve
from tests.support import free_port


@pytest.fixture(autouse=True)
def sanic_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Sanic, "test_mode", True)


@pytest.fixture
def stub() -> Any:
    with bot_api_stub() as stub:
        yield stub


def poller_config(stub: BotApiStub, secret: str = SECRET) -> TelegramConfig:
    return TelegramConfig.from_credentials(
        {
            "access_token": TOKEN,
            "secret_token": secret,
            "mode": "polling",
            "base_url": stub.base_url,
        },
        {},
    )


def rasa_base(webhook_url: str) -> str:
    return webhook_url.split("/webhooks/")[0]


async def run_poller(poller: TelegramPoller, until: Any, timeout: float = 20.0) -> None:
    """Run the poller until the awaitable `until` finishes, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    try:
        await asyncio.wait_for(until, timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_updates_are_forwarded_once_and_answered(stub: BotApiStub) -> None:
    rasa = RasaStandIn()
    stub.webhook_url = "https://old.example.com/hook"
    stub.queue_update(text_update("hello", update_id=700))
    stub.queue_update(text_update("my card is lost", update_id=701))

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            poller = TelegramPoller(poller_config(stub), rasa_base(url), poll_timeout=1)
            await run_poller(
                poller, stub.arrived("getUpdates", where=lambda p: p.get("offset") == "702")
            )
            assert poller.offset == 702

    asyncio.run(scenario())
    assert rasa.texts == ["hello", "my card is lost"]
    assert [m["text"] for m in stub.called("sendMessage")] == [
        "echo: hello",
        "echo: my card is lost",
    ]
    assert stub.called("deleteWebhook") == [{"drop_pending_updates": "false"}]
    assert stub.webhook_url == ""
    first_poll = stub.called("getUpdates")[0]
    assert first_poll["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert first_poll["timeout"] == "1"


def test_the_poller_waits_for_a_rasa_server_that_is_not_up_yet(stub: BotApiStub) -> None:
    rasa = RasaStandIn()
    stub.queue_update(text_update("hello", update_id=800))
    port = free_port()

    async def scenario() -> None:
        poller = TelegramPoller(poller_config(stub), f"http://127.0.0.1:{port}", poll_timeout=1)
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(1.5)
        assert not task.done() and rasa.messages == []
        async with serve(make_channel(stub, mode="polling"), rasa, port=port):
            await stub.arrived("sendMessage")
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert rasa.texts == ["hello"]
    assert stub.called("sendMessage")[0]["chat_id"] == str(CUSTOMER["id"])


def test_a_secret_the_server_refuses_stops_the_poller(stub: BotApiStub) -> None:
    rasa = RasaStandIn()
    stub.queue_update(text_update("hello"))

    async def scenario() -> None:
        async with serve(make_channel(stub, mode="polling"), rasa) as url:
            poller = TelegramPoller(poller_config(stub, "another-secret"), rasa_base(url), 1)
            with pytest.raises(TelegramConfigError, match="TELEGRAM_SECRET"):
                await asyncio.wait_for(poller.run(), 20)
            assert poller.offset is None  # not confirmed: Telegram keeps the update

    asyncio.run(scenario())
    assert rasa.messages == []


def test_a_server_in_webhook_mode_or_without_the_channel_is_an_error(stub: BotApiStub) -> None:
    async def scenario() -> None:
        async with serve(make_channel(stub), RasaStandIn()) as url:
            poller = TelegramPoller(poller_config(stub), rasa_base(url), 1)
            with pytest.raises(TelegramConfigError, match="webhook mode"):
                await asyncio.wait_for(poller.run(), 20)
        no_channel = TelegramPoller(poller_config(stub), f"http://127.0.0.1:{stub.port}", 1)
        with pytest.raises(TelegramConfigError, match="no Telegram channel"):
            await asyncio.wait_for(no_channel.run(), 20)

    asyncio.run(scenario())


def _credentials_file(path: Path, stub: BotApiStub, mode: str) -> Path:
    block = {"access_token": TOKEN, "secret_token": SECRET, "mode": mode, "base_url": stub.base_url}
    if mode == "webhook":
        block["webhook_url"] = "https://bot.example.com/webhooks/telegram/webhook"
    path.write_text(yaml.safe_dump({"rest": None, CREDENTIALS_KEY: block}), encoding="utf-8")
    return path


def test_cli_check_reports_the_bot_and_webhook(
    stub: BotApiStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = _credentials_file(tmp_path / "credentials.yml", stub, "webhook")
    assert main(["telegram", "--check", "--credentials", str(credentials)]) == 0
    out = capsys.readouterr().out
    assert "@fusiondesk_test_bot" in out and "configured mode:  webhook" in out
    assert "(none: polling)" in out and TOKEN not in out


def test_cli_polling_refuses_a_webhook_configuration(
    stub: BotApiStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = _credentials_file(tmp_path / "credentials.yml", stub, "webhook")
    assert main(["telegram", "--polling", "--credentials", str(credentials)]) == 2
    assert "mode: polling" in capsys.readouterr().err
    assert stub.calls == []


def test_cli_without_the_telegram_block_says_how_to_enable_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = tmp_path / "credentials.yml"
    credentials.write_text("rest:\n", encoding="utf-8")
    assert main(["telegram", "--polling", "--credentials", str(credentials)]) == 2
    assert "uncomment the Telegram block" in capsys.readouterr().err


def test_polling_requested_only_for_an_enabled_block_in_polling_mode(
    stub: BotApiStub, tmp_path: Path
) -> None:
    assert polling_requested(_credentials_file(tmp_path / "a.yml", stub, "polling"))
    assert not polling_requested(_credentials_file(tmp_path / "b.yml", stub, "webhook"))
    root = Path(__file__).resolve().parents[2]
    assert not polling_requested(root / "credentials.yml")  # commented out by default
    assert not polling_requested(tmp_path / "missing.yml")
