"""Poll Telegram for updates and forward them to the running Rasa server
(`fusiondesk telegram --polling`, wired in `bot.channels.telegram_cli`).

For a bot without a public HTTPS URL (a laptop, a closed network). With `mode: polling` in the
Telegram block of `credentials.yml`, the Rasa server does not register a webhook; this command
long-polls `getUpdates` and POSTs each update, unchanged, to the server's
`/webhooks/telegram/webhook` with the secret header, exactly as Telegram would. So both modes run
the same code in the server (authentication, parsing, replies, pushed messages).

Why a separate process rather than polling inside the Rasa server: Telegram allows one
`getUpdates` consumer per bot, and the Rasa server may run several Sanic workers (or several
servers behind a load balancer); one forwarder consumes once and spreads nothing.

An update's offset is confirmed to Telegram only after the server accepted it; while the server
is down the forwarder waits and retries, so no message is lost. The server drops re-deliveries
by update id.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

import httpx
from telegram import Bot
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter
from telegram.warnings import PTBUserWarning

from bot.channels.telegram_core import (
    ALLOWED_UPDATES,
    CHANNEL_NAME,
    SECRET_HEADER,
    WEBHOOK_PATH,
    TelegramConfig,
    TelegramConfigError,
    protect_secrets_in_logs,
    redact,
)

logger = logging.getLogger(__name__)

#: Seconds Telegram holds a `getUpdates` call open when there is nothing new.
POLL_TIMEOUT_S = 25
#: Server answers (5xx) tolerated for one update before it is skipped and logged.
MAX_SERVER_ERRORS = 5
#: Longest wait between retries while the Rasa server or Telegram is unreachable.
MAX_BACKOFF_S = 30.0


class TelegramPoller:
    """Long-polls the Bot API and forwards each update to the Rasa server's Telegram route."""

    def __init__(
        self, config: TelegramConfig, rasa_url: str, poll_timeout: int = POLL_TIMEOUT_S
    ) -> None:
        self.config = config
        protect_secrets_in_logs(config.access_token, config.secret_token)
        base = rasa_url.rstrip("/")
        self.forward_url = base + WEBHOOK_PATH
        self.health_url = f"{base}/webhooks/{CHANNEL_NAME}/"
        self.poll_timeout = poll_timeout
        #: Next update id to ask for; Telegram forgets every update below it.
        self.offset: int | None = None
        self.bot = Bot(
            config.access_token, base_url=config.base_url, base_file_url=config.base_file_url
        )

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Forward updates until `stop` is set (or forever).

        Raises:
            TelegramConfigError: Token rejected, another poller running, the server has no
                Telegram channel, or it refuses the secret.
        """
        stop = stop or asyncio.Event()
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0)) as client:
            try:
                await self.bot.initialize()
            except InvalidToken:
                raise TelegramConfigError(
                    "Telegram rejected the bot token: check TELEGRAM_TOKEN (or `access_token`)"
                ) from None
            try:
                await self.wait_for_channel(client, stop)
                if await self.bot.delete_webhook(drop_pending_updates=False):
                    logger.info(
                        "polling @%s; forwarding to %s", self.bot.username, self.forward_url
                    )
                while not stop.is_set():
                    await self.poll_once(client, stop)
            finally:
                await self.bot.shutdown()

    async def wait_for_channel(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Wait until the Rasa server answers on the Telegram route in polling mode."""
        delay = 1.0
        while not stop.is_set():
            try:
                answer = await client.get(self.health_url)
            except httpx.TransportError:
                logger.info("waiting for the Rasa server at %s …", self.health_url)
                await _sleep(stop, delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if answer.status_code == 404:
                raise TelegramConfigError(
                    f"the Rasa server at {self.health_url} has no Telegram channel: uncomment "
                    "the Telegram block in credentials.yml (mode: polling) and restart the bot"
                )
            mode = _json(answer).get("mode")
            if mode == "webhook":
                raise TelegramConfigError(
                    "the Rasa server's Telegram channel is in webhook mode, so it would set the "
                    "webhook again and Telegram would stop answering getUpdates: set "
                    "`mode: polling` in credentials.yml and restart the bot"
                )
            if answer.status_code < 300:
                return
            logger.info(
                "the Rasa server answered %s on %s; waiting", answer.status_code, self.health_url
            )
            await _sleep(stop, delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def poll_once(self, client: httpx.AsyncClient, stop: asyncio.Event) -> int:
        """One `getUpdates` round; forwards what came. Returns the number of updates."""
        try:
            with warnings.catch_warnings():
                # do_api_request keeps the raw JSON (Bot.get_updates would re-serialise it)
                warnings.simplefilter("ignore", PTBUserWarning)
                updates = await self.bot.do_api_request(
                    "getUpdates",
                    api_kwargs={
                        "offset": self.offset,
                        "timeout": self.poll_timeout,
                        "allowed_updates": list(ALLOWED_UPDATES),
                    },
                    read_timeout=self.poll_timeout + 10,
                )
        except Conflict:
            raise TelegramConfigError(
                "Telegram refuses getUpdates: another process polls this bot (or a webhook was "
                "set again). Stop the other poller, or use webhook mode"
            ) from None
        except RetryAfter:
            await _sleep(stop, 5.0)
            return 0
        except NetworkError as e:
            logger.warning("Telegram unreachable (%s); retrying", redact(str(e)))
            await _sleep(stop, 3.0)
            return 0
        for update in updates or []:
            if stop.is_set():
                break
            await self.forward(client, update, stop)
            self.offset = int(update["update_id"]) + 1
        return len(updates or [])

    async def forward(
        self, client: httpx.AsyncClient, update: dict[str, Any], stop: asyncio.Event
    ) -> bool:
        """POST one update to the Rasa server as Telegram would.

        Waits and retries while the server is unreachable; skips (and logs) an update the server
        rejects as malformed or keeps failing on.

        Returns:
            True when the server accepted the update.
        """
        update_id = update.get("update_id")
        delay, errors = 1.0, 0
        while not stop.is_set():
            try:
                answer = await client.post(
                    self.forward_url, json=update, headers={SECRET_HEADER: self.config.secret_token}
                )
            except httpx.TransportError as e:
                logger.warning(
                    "Rasa server unreachable (%s); update %s waits %.0f s", e, update_id, delay
                )
                await _sleep(stop, delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if answer.status_code < 300:
                return True
            if answer.status_code == 403:
                raise TelegramConfigError(
                    "the Rasa server refused the webhook secret: TELEGRAM_SECRET must be the same "
                    "for this command and the server"
                )
            if answer.status_code == 404:
                raise TelegramConfigError(
                    f"the Rasa server has no Telegram route at {self.forward_url}: enable the "
                    "Telegram block in credentials.yml and restart the bot"
                )
            if answer.status_code < 500:
                logger.error("the server rejected update %s (%s); skipped", update_id, answer.text)
                return False
            errors += 1
            if errors >= MAX_SERVER_ERRORS:
                logger.error("the server failed on update %s %d times; skipped", update_id, errors)
                return False
            await _sleep(stop, delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        return False


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, waking early when `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def check(config: TelegramConfig) -> str:
    """A report on the bot and its webhook, for `fusiondesk telegram --check`."""
    protect_secrets_in_logs(config.access_token, config.secret_token)
    bot = Bot(config.access_token, base_url=config.base_url, base_file_url=config.base_file_url)
    try:
        await bot.initialize()
    except InvalidToken:
        raise TelegramConfigError(
            "Telegram rejected the bot token: check TELEGRAM_TOKEN (or `access_token`)"
        ) from None
    except NetworkError as e:
        raise TelegramConfigError(f"cannot reach the Telegram Bot API: {redact(str(e))}") from None
    try:
        info = await bot.get_webhook_info()
    finally:
        await bot.shutdown()
    lines = [
        f"bot:              @{bot.username} (id {bot.id})",
        f"configured mode:  {config.mode}",
        f"webhook:          {info.url or '(none: polling)'}",
        f"pending updates:  {info.pending_update_count}",
    ]
    if info.last_error_message:
        lines.append(f"last error:       {info.last_error_message}")
    if config.mode == "webhook" and info.url != config.webhook_url:
        lines.append(
            f"note: the webhook is set when the Rasa server starts (to {config.webhook_url})"
        )
    return "\n".join(lines)
