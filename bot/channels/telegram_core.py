"""Pure logic of the Telegram channel: configuration, update classification, text splitting,
inline keyboards and token redaction.

Nothing here imports Rasa or Sanic, so it is tested with hand-built Telegram objects. The Rasa
adapter (`bot.channels.telegram`) and the polling forwarder (`bot.channels.telegram_poller`)
are thin layers over it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.errors import ConfigError

#: `name()` of the input channel: routes live under `/webhooks/telegram/`, and Rasa's
#: `output_channel=latest` finds the channel by this name.
CHANNEL_NAME = "telegram"
#: Path of the webhook route on the Rasa server.
WEBHOOK_PATH = f"/webhooks/{CHANNEL_NAME}/webhook"
#: Header in which Telegram echoes the `secret_token` given to `setWebhook`.
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Key of the channel's block in `credentials.yml` (the class's module path).
CREDENTIALS_KEY = "bot.channels.telegram.TelegramInput"
#: Telegram's limit for one text message (UTF-16 code units after entity parsing).
TEXT_LIMIT = 4096
#: Telegram's limit for `callback_data` of an inline button, in bytes.
CALLBACK_DATA_LIMIT = 64
#: Update types the bot asks Telegram for (`setWebhook` / `getUpdates`).
ALLOWED_UPDATES: tuple[str, ...] = ("message", "edited_message", "callback_query")

UNSUPPORTED_TEXT = (
    "Sorry, I can only read text messages for now. Please type your question in words."
)
EDITED_TEXT = (
    "I can only read new messages, not edits. Please send your correction as a new message."
)
EXPIRED_BUTTON_TEXT = "That button has expired. Please type your answer instead."

# Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - as a webhook secret.
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_ENV_UNSET_RE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_SENTENCE_END_RE = re.compile(r"[.!?…][\"'”’)\]]*\s+")
_CALLBACK_TOKEN_PREFIX = "fd-cb:"

Mode = Literal["webhook", "polling"]


class TelegramConfigError(ConfigError):
    """The Telegram channel's settings are missing or invalid."""


@dataclass(frozen=True)
class TelegramConfig:
    """Settings of the Telegram channel, from `credentials.yml` with environment fallbacks."""

    #: Bot token from @BotFather (`access_token`, else `TELEGRAM_TOKEN`). Never logged.
    access_token: str = field(repr=False)
    #: Secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (`secret_token`, else
    #: `TELEGRAM_SECRET`); the polling forwarder sends it too. Never logged.
    secret_token: str = field(repr=False)
    #: `webhook` (Telegram calls the Rasa server) or `polling` (`fusiondesk telegram --polling`
    #: fetches updates and forwards them to the Rasa server).
    mode: Mode = "webhook"
    #: Public HTTPS URL that reaches `/webhooks/telegram/webhook` (`webhook_url`, else
    #: `TELEGRAM_WEBHOOK_URL`); required in webhook mode.
    webhook_url: str = ""
    #: Bot API base URL (a local Bot API server, or a stand-in in tests).
    base_url: str = "https://api.telegram.org/bot"
    #: Bot API file base URL.
    base_file_url: str = "https://api.telegram.org/file/bot"

    @property
    def custom_api(self) -> bool:
        """True when the bot talks to a Bot API server other than api.telegram.org."""
        return not self.base_url.startswith("https://api.telegram.org/")

    @classmethod
    def from_credentials(
        cls, credentials: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
    ) -> TelegramConfig:
        """Build and validate the settings.

        Args:
            credentials: The channel's block of `credentials.yml` (None when empty).
            environ: Where `TELEGRAM_TOKEN`, `TELEGRAM_SECRET` and `TELEGRAM_WEBHOOK_URL` are
                read from when the block lacks a value (default: `os.environ`).

        Raises:
            TelegramConfigError: A required value is missing or invalid; the message says how
                to fix it.
        """
        environ = os.environ if environ is None else environ
        block = dict(credentials or {})
        known = {"access_token", "secret_token", "webhook_url", "mode", "base_url", "base_file_url"}
        unknown = sorted(set(block) - known)
        if unknown:
            raise TelegramConfigError(
                f"unknown key(s) {', '.join(unknown)} in the Telegram block of credentials.yml; "
                f"known keys: {', '.join(sorted(known))}"
            )

        def value(key: str, env_name: str | None = None) -> str:
            raw = block.get(key)
            if raw is None or str(raw).strip() == "":
                raw = environ.get(env_name, "") if env_name else ""
            return str(raw).strip()

        token = value("access_token", "TELEGRAM_TOKEN")
        secret = value("secret_token", "TELEGRAM_SECRET")
        webhook_url = value("webhook_url", "TELEGRAM_WEBHOOK_URL")
        mode = value("mode") or "webhook"
        base_url = value("base_url") or cls.base_url
        base_file_url = value("base_file_url") or (
            base_url.replace("/bot", "/file/bot", 1) if value("base_url") else cls.base_file_url
        )

        if mode not in ("webhook", "polling"):
            raise TelegramConfigError(
                f"Telegram mode {mode!r} is unknown: use `mode: webhook` (a public HTTPS URL "
                "reaches this server) or `mode: polling` (run `fusiondesk telegram --polling`)"
            )
        if not token:
            raise TelegramConfigError(
                "the Telegram channel has no bot token: create a bot with @BotFather and set "
                "TELEGRAM_TOKEN (or `access_token` in credentials.yml)"
            )
        if ":" not in token or any(c.isspace() for c in token):
            raise TelegramConfigError(
                "the Telegram bot token does not look like one from @BotFather "
                "(expected `<digits>:<letters>`); check TELEGRAM_TOKEN / access_token"
            )
        if not secret:
            raise TelegramConfigError(
                "the Telegram channel has no webhook secret, so it could not tell Telegram's "
                "calls from forged ones: set TELEGRAM_SECRET (or `secret_token`), e.g. to the "
                'output of `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        if not _SECRET_RE.match(secret):
            raise TelegramConfigError(
                "the Telegram webhook secret may only contain A-Z, a-z, 0-9, _ and - "
                "(1-256 characters); choose another TELEGRAM_SECRET"
            )
        if mode == "webhook":
            if not webhook_url:
                raise TelegramConfigError(
                    "Telegram webhook mode needs the public HTTPS URL of this server's "
                    f"{WEBHOOK_PATH}: set TELEGRAM_WEBHOOK_URL (or `webhook_url`), or use "
                    "`mode: polling` with `fusiondesk telegram --polling` when there is none"
                )
            custom_api = not base_url.startswith("https://api.telegram.org/")
            if not webhook_url.startswith("https://") and not custom_api:
                raise TelegramConfigError(
                    f"Telegram only calls HTTPS webhooks; TELEGRAM_WEBHOOK_URL={webhook_url!r} "
                    "must start with https:// (put a TLS reverse proxy in front of Rasa)"
                )
        return cls(
            access_token=token,
            secret_token=secret,
            mode=mode,  # type: ignore[arg-type]
            webhook_url=webhook_url,
            base_url=base_url,
            base_file_url=base_file_url,
        )

    @classmethod
    def from_file(cls, path: Path, environ: Mapping[str, str] | None = None) -> TelegramConfig:
        """Read the Telegram block of a Rasa credentials file (with `${VAR}` expansion, as Rasa
        does).

        Raises:
            TelegramConfigError: The file is missing or unreadable, the block is absent (still
                commented out), or a value is invalid.
        """
        environ = os.environ if environ is None else environ
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise TelegramConfigError(f"cannot read credentials file {path}: {e}") from e
        if not isinstance(content, dict) or CREDENTIALS_KEY not in content:
            raise TelegramConfigError(
                f"{path} has no `{CREDENTIALS_KEY}:` block: uncomment the Telegram block "
                "(see README, Telegram) and restart the bot"
            )
        block = content[CREDENTIALS_KEY] or {}
        if not isinstance(block, dict):
            raise TelegramConfigError(f"the Telegram block of {path} must be a mapping")
        return cls.from_credentials({k: _expand(v, environ) for k, v in block.items()}, environ)


def _expand(value: Any, environ: Mapping[str, str]) -> Any:
    """Expand `$VAR` / `${VAR}` like Rasa's credentials loader; unset variables are an error."""
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(0).strip("${}")
        if name not in environ:
            raise TelegramConfigError(
                f"credentials.yml refers to the environment variable {name}, which is not set"
            )
        return environ[name]

    return _ENV_UNSET_RE.sub(substitute, value)


# ---------------------------------------------------------------------------------------------
# Text


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _fitting_prefix_len(text: str, limit: int) -> int:
    """Number of characters of `text` whose UTF-16 length fits in `limit`."""
    units = 0
    for i, c in enumerate(text):
        units += 2 if ord(c) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _best_cut(window: str, minimum: int) -> int:
    """Where to cut `window`: after the last paragraph break, line break, sentence end or space
    that leaves a chunk of at least `minimum` characters; else at the window's end."""
    candidates = [
        window.rfind("\n\n"),
        window.rfind("\n"),
        max((m.end() for m in _SENTENCE_END_RE.finditer(window)), default=-1),
        max(window.rfind(" "), window.rfind("\t")),
    ]
    for position in candidates:
        if position >= minimum:
            return position
    return len(window)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split `text` into messages of at most `limit` UTF-16 units.

    Cuts prefer paragraph breaks, then line breaks, sentence ends and spaces (only where the
    chunk stays at least half the limit long); a single word longer than the limit is cut
    hard. Whitespace at the cuts is dropped; nothing else is lost.
    """
    text = text.strip()
    chunks: list[str] = []
    while utf16_len(text) > limit:
        window = text[: _fitting_prefix_len(text, limit)]
        cut = _best_cut(window, minimum=len(window) // 2)
        chunk = text[:cut].rstrip()
        chunks.append(chunk)
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def agent_label(kwargs: Mapping[str, Any]) -> str | None:
    """The visible label of a human agent's message, or None for the bot's own messages.

    The handoff contract: an agent's reply is a `BotUttered` with
    `metadata = {"from_human": true, "agent_name": "<name>"}`; Rasa passes the metadata to the
    output channel as keyword arguments.
    """
    if kwargs.get("from_human") is not True:
        return None
    name = str(kwargs.get("agent_name") or "").strip()
    return f"👤 {name} (agent)" if name else "👤 Agent"


def decorate(text: str, kwargs: Mapping[str, Any]) -> str:
    """Prefix a human agent's message with its label; bot messages are left as they are."""
    label = agent_label(kwargs)
    return f"{label}: {text}" if label else text


# ---------------------------------------------------------------------------------------------
# Buttons


class CallbackPayloads:
    """Maps button payloads to `callback_data` (at most 64 bytes) and back.

    Short payloads travel as they are. Longer ones (e.g. `/inform{"amount": ...}`) travel as a
    digest kept in a bounded in-memory table; after a restart such a button answers with
    `EXPIRED_BUTTON_TEXT` instead of guessing.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._long: OrderedDict[str, str] = OrderedDict()

    def encode(self, payload: str) -> str:
        """The `callback_data` that stands for `payload`."""
        if len(payload.encode("utf-8")) <= CALLBACK_DATA_LIMIT and not payload.startswith(
            _CALLBACK_TOKEN_PREFIX
        ):
            return payload
        token = _CALLBACK_TOKEN_PREFIX + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]
        self._long[token] = payload
        self._long.move_to_end(token)
        while len(self._long) > self._capacity:
            self._long.popitem(last=False)
        return token

    def decode(self, data: str) -> str | None:
        """The payload behind `callback_data`, or None when it is no longer known."""
        if data.startswith(_CALLBACK_TOKEN_PREFIX):
            return self._long.get(data)
        return data


def inline_keyboard(
    buttons: Iterable[Mapping[str, Any]], payloads: CallbackPayloads
) -> InlineKeyboardMarkup | None:
    """Rasa buttons (`title` + `payload`, or `title` + `url`) as an inline keyboard.

    Up to three short buttons share a row; otherwise each button gets its own row so that
    titles are not truncated on phones.
    """
    keys: list[InlineKeyboardButton] = []
    for button in buttons:
        title = str(button.get("title") or button.get("payload") or "").strip()
        if not title:
            continue
        url = button.get("url")
        if url:
            keys.append(InlineKeyboardButton(title, url=str(url)))
            continue
        payload = str(button.get("payload") or title)
        keys.append(InlineKeyboardButton(title, callback_data=payloads.encode(payload)))
    if not keys:
        return None
    if len(keys) <= 3 and all(len(k.text) <= 20 for k in keys):
        return InlineKeyboardMarkup([keys])
    return InlineKeyboardMarkup([[k] for k in keys])


# ---------------------------------------------------------------------------------------------
# Updates

InboundKind = Literal["text", "callback", "unsupported", "edited", "ignore"]


@dataclass(frozen=True)
class Inbound:
    """What an update means for the bot.

    `text` holds what Rasa receives (for `text` and `callback`), `chat_id` where replies go
    (None when there is no chat to answer), `texts` more messages to send to Rasa after `text`
    (`/restart` is followed by a greeting).
    """

    kind: InboundKind
    chat_id: int | None = None
    text: str = ""
    callback_query_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    texts_after: tuple[str, ...] = ()


def _metadata(update: Update) -> dict[str, Any]:
    user = update.effective_user
    chat = update.effective_chat
    info: dict[str, Any] = {"update_id": update.update_id}
    if chat is not None:
        info["chat_id"] = chat.id
        info["chat_type"] = chat.type
    if user is not None:
        info["user"] = {
            "id": user.id,
            "first_name": user.first_name,
            "username": user.username,
            "language_code": user.language_code,
        }
    return {"telegram": info}


def command_text(text: str, bot_username: str | None) -> str | None:
    """What a message starting with `/` means for Rasa; None when addressed to another bot.

    `/start` greets, `/restart` restarts the conversation; any other command loses its slash
    so that the NLU reads it as words (customers cannot trigger intents or set entities with
    Rasa's `/intent{...}` syntax by typing it).
    """
    head, _, rest = text.partition(" ")
    command, _, target = head[1:].partition("@")
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    command = command.lower()
    if command == "start":
        return "/greet"
    if command == "restart":
        return "/restart"
    return f"{command} {rest}".strip()


def classify_update(update: Update, bot_username: str | None = None) -> Inbound:
    """Decide what the bot does with an update (pure; sends nothing)."""
    metadata = _metadata(update)
    query = update.callback_query
    if query is not None:
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        return Inbound(
            "callback",
            chat_id=chat_id,
            text=query.data or "",
            callback_query_id=query.id,
            metadata=metadata,
        )
    if update.edited_message is not None:
        return Inbound("edited", chat_id=update.edited_message.chat.id, metadata=metadata)
    message = update.message
    if message is None:
        # channel posts, chat member changes, polls, inline queries ...: nobody to answer
        return Inbound("ignore", metadata=metadata)
    if message.from_user is not None and message.from_user.is_bot:
        return Inbound("ignore", metadata=metadata)
    chat_id = message.chat.id
    text = (message.text or message.caption or "").strip()
    if not text:
        return Inbound("unsupported", chat_id=chat_id, metadata=metadata)
    if message.text and text.startswith("/"):
        meaning = command_text(text, bot_username)
        if meaning is None:
            return Inbound("ignore", metadata=metadata)
        if meaning == "/restart":
            return Inbound(
                "text", chat_id=chat_id, text=meaning, metadata=metadata, texts_after=("/greet",)
            )
        if not meaning:
            return Inbound("unsupported", chat_id=chat_id, metadata=metadata)
        return Inbound("text", chat_id=chat_id, text=meaning, metadata=metadata)
    return Inbound("text", chat_id=chat_id, text=text, metadata=metadata)


# ---------------------------------------------------------------------------------------------
# Logging

#: Loggers that may see the token: python-telegram-bot logs the Bot API URL (which contains
#: it) at DEBUG, and httpx logs every request URL at INFO.
TOKEN_LOGGERS: tuple[str, ...] = (
    "telegram",
    "telegram.Bot",
    "telegram.BaseRequest",
    "telegram.HTTPXRequest",
    "telegram.ext",
    "httpx",
    "httpcore",
    "bot.channels",
    "bot.channels.telegram",
    "bot.channels.telegram_poller",
    "sanic.error",
    "rasa.core.channels",
)


class TokenRedactingFilter(logging.Filter):
    """Replaces known secrets in log records (message, arguments and traceback) by `***`."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_REDACTOR = TokenRedactingFilter()


def protect_secrets_in_logs(*secrets: str) -> TokenRedactingFilter:
    """Keep the bot token and webhook secret out of every log.

    Raises httpx/httpcore to WARNING and python-telegram-bot to INFO (their lower levels print
    request URLs, which contain the token), and redacts the secrets from records of the loggers
    that might still carry them.
    """
    _REDACTOR.secrets.update(s for s in secrets if s)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    telegram_logger = logging.getLogger("telegram")
    if telegram_logger.level == logging.NOTSET or telegram_logger.level < logging.INFO:
        telegram_logger.setLevel(logging.INFO)
    for name in TOKEN_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)
    return _REDACTOR


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    return _REDACTOR.redact(text)
