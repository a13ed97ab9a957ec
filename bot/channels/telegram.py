"""Telegram channel for the Rasa server, on python-telegram-bot.

Enabled in `credentials.yml` by the module path of `TelegramInput` (see README, Telegram):

    bot.channels.telegram.TelegramInput:
      mode: webhook            # or polling (then run `fusiondesk telegram --polling`)
      # access_token / secret_token / webhook_url default to TELEGRAM_TOKEN / TELEGRAM_SECRET /
      # TELEGRAM_WEBHOOK_URL from the environment

Updates arrive at `POST /webhooks/telegram/webhook` (from Telegram in webhook mode, from the
polling forwarder otherwise) and are accepted only with the configured secret in Telegram's
`X-Telegram-Bot-Api-Secret-Token` header. The webhook is registered once, on the server's own
event loop, after the server has started. The conversation id (Rasa's sender id) is the chat id,
so messages pushed later through Rasa's HTTP API (`output_channel=latest`) reach the same chat.

The decisions (what an update means, how to split text, keyboards) live in
`bot.channels.telegram_core`; this module only connects them to Rasa, Sanic and the Bot API.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from telegram import Bot, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.error import TelegramError as BotApiError
from telegram.request import HTTPXRequest

from bot.channels.telegram_core import (
    ALLOWED_UPDATES,
    CHANNEL_NAME,
    EDITED_TEXT,
    EXPIRED_BUTTON_TEXT,
    SECRET_HEADER,
    UNSUPPORTED_TEXT,
    CallbackPayloads,
    Inbound,
    TelegramConfig,
    TelegramConfigError,
    classify_update,
    decorate,
    inline_keyboard,
    protect_secrets_in_logs,
    redact,
    split_text,
)

logger = logging.getLogger(__name__)

#: Telegram shows "typing…" for about 5 s; refresh it while the bot is still working.
TYPING_REFRESH_S = 4.0
#: Attempts per Bot API call when Telegram asks to slow down or the connection fails.
SEND_ATTEMPTS = 3
#: Longest wait honoured from a `429 Too Many Requests`.
MAX_RETRY_AFTER_S = 30.0
#: Waits between attempts to initialise the bot and set the webhook at start-up.
STARTUP_BACKOFF_S: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 60)
#: How many recent update ids are remembered to drop Telegram's re-deliveries.
SEEN_UPDATES = 2048

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


class TelegramBotHandle:
    """The python-telegram-bot `Bot` shared by the input channel and its output channels.

    The bot is created without I/O and initialised (`getMe`) lazily, once, on the event loop
    that first uses it: the Rasa server's loop. An `asyncio.Lock` keeps concurrent first uses
    from initialising twice.
    """

    def __init__(self, config: TelegramConfig) -> None:
        self.config = config
        protect_secrets_in_logs(config.access_token, config.secret_token)
        self.bot = Bot(
            config.access_token,
            base_url=config.base_url,
            base_file_url=config.base_file_url,
            request=HTTPXRequest(connection_pool_size=32, read_timeout=15.0),
        )
        self.payloads = CallbackPayloads()
        self._lock = asyncio.Lock()
        self._ready = False

    @property
    def username(self) -> str | None:
        """The bot's @username once initialised (used to route `/command@bot`)."""
        return self.bot.username if self._ready else None

    async def ready(self) -> Bot:
        """The initialised bot.

        Raises:
            TelegramConfigError: Telegram rejected the token.
            telegram.error.NetworkError: The Bot API cannot be reached (try again later).
        """
        if self._ready:
            return self.bot
        async with self._lock:
            if not self._ready:
                try:
                    await self.bot.initialize()
                except InvalidToken:
                    # PTB's message repeats the token; say what to do instead.
                    raise TelegramConfigError(
                        "Telegram rejected the bot token: check TELEGRAM_TOKEN (or "
                        "`access_token`), or ask @BotFather for a new one"
                    ) from None
                self._ready = True
        return self.bot

    async def call(self, method: str, **params: Any) -> Any:
        """Call the bot's `method` (e.g. `send_message`) with `params`, retrying what is safe
        to retry.

        A `429` is honoured (up to `MAX_RETRY_AFTER_S`); a failed connection is retried, a read
        time-out is not (the message may have been delivered). A chat that blocked the bot
        (`403 Forbidden`) is logged and skipped: nobody can receive the message.

        Returns:
            The call's result, or None when the chat blocked the bot.
        """
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                bot = await self.ready()
                return await getattr(bot, method)(**params)
            except Forbidden as e:
                logger.warning("Telegram refused %s: %s (chat blocked the bot?)", method, e)
                return None
            except RetryAfter as e:
                if attempt == SEND_ATTEMPTS:
                    raise
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    retry_after = e.retry_after
                seconds = (
                    retry_after.total_seconds()
                    if hasattr(retry_after, "total_seconds")
                    else float(retry_after)
                )
                await asyncio.sleep(min(max(seconds, 0.0), MAX_RETRY_AFTER_S))
            except (BadRequest, TimedOut):
                # BadRequest is a NetworkError in PTB but never succeeds on a retry; a read
                # time-out may have delivered the message already
                raise
            except NetworkError as e:
                if attempt == SEND_ATTEMPTS:
                    raise
                logger.info("Telegram %s failed (%s); retrying", method, redact(str(e)))
                await asyncio.sleep(0.5 * attempt)
        return None  # not reached: the last attempt returns or raises

    async def start(self) -> None:
        """Initialise the bot and, in webhook mode, register the webhook once.

        Retries with back-off while the Bot API is unreachable; gives up (with an error that says
        what to fix) when the token is rejected or Telegram refuses the webhook URL.
        """
        config = self.config
        for delay in (*STARTUP_BACKOFF_S, None):
            try:
                bot = await self.ready()
                if config.mode == "webhook":
                    await bot.set_webhook(
                        url=config.webhook_url,
                        secret_token=config.secret_token,
                        allowed_updates=list(ALLOWED_UPDATES),
                    )
                    logger.info(
                        "Telegram bot @%s: webhook set to %s", bot.username, config.webhook_url
                    )
                else:
                    logger.info(
                        "Telegram bot @%s: polling mode, run `fusiondesk telegram --polling` "
                        "to forward updates",
                        bot.username,
                    )
                return
            except TelegramConfigError as e:
                logger.error("Telegram channel disabled: %s", e)
                return
            except BadRequest as e:
                logger.error(
                    "Telegram refused the webhook %s: %s. Check TELEGRAM_WEBHOOK_URL (public "
                    "HTTPS, port 443, 80, 88 or 8443)",
                    config.webhook_url,
                    redact(str(e)),
                )
                return
            except (NetworkError, BotApiError) as e:
                if delay is None:
                    logger.error("Telegram Bot API unreachable; giving up: %s", redact(str(e)))
                    return
                logger.warning(
                    "Telegram Bot API unreachable (%s); retrying in %.0f s", redact(str(e)), delay
                )
                await asyncio.sleep(delay)

    async def shutdown(self) -> None:
        """Close the bot's HTTP connections (the webhook stays set for the next start)."""
        if self._ready:
            await self.bot.shutdown()
            self._ready = False


class TelegramOutput(OutputChannel):
    """Sends Rasa's responses to one Telegram bot: text (split at 4,096), inline keyboards,
    photos, and human agents' messages marked as such."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    def __init__(self, handle: TelegramBotHandle) -> None:
        self.handle = handle
        #: the "typing…" call in flight: a message waits for it, so that Telegram never
        #: receives the indicator after the answer (it would show "typing…" for 5 s more)
        self._typing: asyncio.Future[Any] | None = None
        #: how many messages this output has delivered (the typing refresher skips a beat
        #: after each: Telegram clears the indicator when a message arrives)
        self.delivered = 0

    async def _deliver(self, method: str, **kwargs: Any) -> Any:
        typing = self._typing
        if typing is not None and not typing.done():
            await asyncio.wait([typing])
        self.delivered += 1
        return await self.handle.call(method, **kwargs)

    async def _send_chunks(
        self, recipient_id: str, text: str, reply_markup: InlineKeyboardMarkup | None = None
    ) -> list[Message | None]:
        chunks = split_text(text) or ([] if reply_markup is None else ["…"])
        sent = []
        for index, chunk in enumerate(chunks):
            markup = reply_markup if index == len(chunks) - 1 else None
            sent.append(
                await self._deliver(
                    "send_message", chat_id=recipient_id, text=chunk, reply_markup=markup
                )
            )
        return sent

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        """Send plain text (no parse mode: nothing in it is read as markup)."""
        await self._send_chunks(recipient_id, decorate(text, kwargs))

    async def send_text_with_buttons(
        self,
        recipient_id: str,
        text: str,
        buttons: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        """Send text with the buttons as an inline keyboard under its last part."""
        markup = inline_keyboard(buttons, self.handle.payloads)
        await self._send_chunks(recipient_id, decorate(text or "", kwargs), markup)

    async def send_quick_replies(
        self,
        recipient_id: str,
        text: str,
        quick_replies: list[dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        """Quick replies are inline buttons too."""
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        """Send a photo by URL; when Telegram cannot fetch it, send the link instead."""
        try:
            await self._deliver("send_photo", chat_id=recipient_id, photo=image)
        except BadRequest as e:
            logger.warning("Telegram could not send the image %s (%s); sending its link", image, e)
            await self.send_text_message(recipient_id, image, **kwargs)

    async def send_custom_json(
        self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any
    ) -> None:
        """Custom payloads are meant for other channels; only a `text` inside is shown."""
        text = json_message.get("text")
        if isinstance(text, str) and text.strip():
            await self.send_text_message(recipient_id, text, **kwargs)
        else:
            logger.debug("custom payload without text not shown on Telegram")

    async def send_typing(self, chat_id: int | str) -> None:
        """Show "typing…" in the chat (best effort: a failure only loses the indicator)."""
        call = asyncio.ensure_future(
            self.handle.call("send_chat_action", chat_id=chat_id, action=ChatAction.TYPING)
        )
        self._typing = call
        try:
            await call
        except BotApiError as e:
            logger.debug("sendChatAction failed: %s", redact(str(e)))

    async def answer_callback(self, callback_query_id: str) -> None:
        """Stop the button's spinner (best effort: a stale query cannot be answered)."""
        try:
            await self.handle.call("answer_callback_query", callback_query_id=callback_query_id)
        except BotApiError as e:
            logger.info("answerCallbackQuery failed: %s", redact(str(e)))


class _SeenUpdates:
    """Bounded memory of update ids already handled, to drop Telegram's re-deliveries."""

    def __init__(self, capacity: int = SEEN_UPDATES) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, update_id: object) -> bool:
        return update_id in self._ids

    def add(self, update_id: int) -> None:
        self._ids[update_id] = None
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class TelegramInput(InputChannel):
    """Receives Telegram updates at `/webhooks/telegram/webhook` and hands them to Rasa."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> TelegramInput:
        """Build the channel from its `credentials.yml` block (environment as fallback).

        Raises:
            TelegramConfigError: No token, no secret, or (webhook mode) no webhook URL; Rasa
                then refuses to start, with the message saying what to set.
        """
        return cls(TelegramConfig.from_credentials(credentials))

    def __init__(self, config: TelegramConfig) -> None:
        self.config = config
        self.handle = TelegramBotHandle(config)
        self._seen = _SeenUpdates()
        self._start_task: asyncio.Task[None] | None = None

    def get_output_channel(self) -> TelegramOutput:
        """An output channel bound to this bot: Rasa uses it for messages pushed through its
        HTTP API (`output_channel=latest`), e.g. a human agent's reply."""
        return TelegramOutput(self.handle)

    def secret_matches(self, given: str | None) -> bool:
        """Constant-time comparison of the header with the configured secret."""
        if not given or not self.config.secret_token:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.config.secret_token.encode("utf-8"))

    async def _to_rasa(
        self, on_new_message: OnNewMessage, output: TelegramOutput, inbound: Inbound, text: str
    ) -> None:
        await on_new_message(
            UserMessage(
                text,
                output,
                str(inbound.chat_id),
                input_channel=self.name(),
                metadata=inbound.metadata,
            )
        )

    async def handle_inbound(self, inbound: Inbound, on_new_message: OnNewMessage) -> None:
        """Act on a classified update: reply politely, or pass the text to Rasa while the chat
        shows "typing…"."""
        output = self.get_output_channel()
        if inbound.kind == "ignore" or inbound.chat_id is None:
            return
        if inbound.kind == "unsupported":
            await output.send_text_message(str(inbound.chat_id), UNSUPPORTED_TEXT)
            return
        if inbound.kind == "edited":
            await output.send_text_message(str(inbound.chat_id), EDITED_TEXT)
            return
        text = inbound.text
        if inbound.kind == "callback":
            if inbound.callback_query_id:
                await output.answer_callback(inbound.callback_query_id)
            payload = self.handle.payloads.decode(text)
            if not payload:
                await output.send_text_message(str(inbound.chat_id), EXPIRED_BUTTON_TEXT)
                return
            text = payload
        await output.send_typing(inbound.chat_id)
        typing = asyncio.create_task(self._keep_typing(output, inbound.chat_id))
        try:
            for message_text in (text, *inbound.texts_after):
                await self._to_rasa(on_new_message, output, inbound, message_text)
        finally:
            typing.cancel()

    @staticmethod
    async def _keep_typing(output: TelegramOutput, chat_id: int) -> None:
        delivered = output.delivered
        while True:
            await asyncio.sleep(TYPING_REFRESH_S)
            if output.delivered == delivered:  # nothing sent since the last beat: still working
                await output.send_typing(chat_id)
            delivered = output.delivered

    async def receive(self, request: Request, on_new_message: OnNewMessage) -> HTTPResponse:
        """The webhook: authenticate, parse, act. Telegram re-sends on any non-2xx answer, so
        everything understood is answered 200 and only a failure inside Rasa is a 500."""
        if not self.secret_matches(request.headers.get(SECRET_HEADER)):
            logger.warning("Telegram webhook call with a wrong or missing secret refused")
            return response.json({"error": "forbidden"}, status=403)
        try:
            data = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError):
            return response.json({"error": "the body is not JSON"}, status=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return response.json({"error": "not a Telegram update"}, status=400)
        try:
            update = Update.de_json(data, self.handle.bot)
            inbound = classify_update(update, self.handle.username)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            logger.warning("malformed Telegram update %s: %r", data.get("update_id"), e)
            return response.json({"error": "malformed Telegram update"}, status=400)

        if update.update_id in self._seen:
            return response.json({"status": "duplicate"})
        try:
            await self.handle_inbound(inbound, on_new_message)
        except Exception:  # noqa: BLE001 - any failure: let Telegram deliver the update again
            logger.exception("handling Telegram update %s failed", update.update_id)
            return response.json({"error": "the bot could not handle the update"}, status=500)
        self._seen.add(update.update_id)
        return response.json({"status": "ok"})

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """Routes `GET /` (health) and `POST /webhook`, plus server start/stop listeners that
        register the webhook and close the bot's connections."""
        telegram_webhook = Blueprint("fusiondesk_telegram_webhook", __name__)

        @telegram_webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok", "mode": self.config.mode})

        @telegram_webhook.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> HTTPResponse:
            return await self.receive(request, on_new_message)

        @telegram_webhook.listener("after_server_start")
        async def start(_app: Any, _loop: Any) -> None:
            # On the server's loop, after it listens: Telegram's first call finds it ready.
            self._start_task = asyncio.create_task(self.handle.start())

        @telegram_webhook.listener("before_server_stop")
        async def stop(_app: Any, _loop: Any) -> None:
            if self._start_task is not None and not self._start_task.done():
                self._start_task.cancel()
            await self.handle.shutdown()

        return telegram_webhook
