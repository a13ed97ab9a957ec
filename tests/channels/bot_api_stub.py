"""A local stand-in of the Telegram Bot API on 127.0.0.1, plus real Telegram update JSON.

The stand-in is a real HTTP server (a thread) that answers `/bot<token>/<method>` the way
api.telegram.org does (`{"ok": true, "result": ...}` with the documented object shapes, and
`{"ok": false, "error_code": ..., "description": ...}` for errors) and records every call with
its decoded parameters, so tests assert the exact requests the bot sent. It serves
`getUpdates` from a queue for the polling forwarder.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-test"
SECRET = "s3cr3t-Telegram_webhook-token"

BOT_USER: dict[str, Any] = {
    "id": 1234567890,
    "is_bot": True,
    "first_name": "FusionDesk Test",
    "username": "fusiondesk_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}

CUSTOMER: dict[str, Any] = {
    "id": 987654321,
    "is_bot": False,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada_l",
    "language_code": "en",
}


@dataclass
class ApiCall:
    """One request the bot sent: Bot API method, token in the URL and decoded parameters."""

    method: str
    token: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


def _decode_value(value: str) -> Any:
    # PTB sends scalars as strings and nested objects (reply_markup, allowed_updates) as JSON
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class BotApiStub:
    """The Bot API stand-in. Use as a context manager; `base_url` goes into the channel."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[ApiCall] = []
        self._lock = threading.Condition()
        self._failures: dict[str, list[tuple[int, str, dict[str, Any] | None]]] = {}
        self._updates: list[dict[str, Any]] = []
        self._message_ids = itertools.count(100)
        self.webhook_url = ""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    def __enter__(self) -> BotApiStub:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # -- test controls -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next call of `method` with a Bot API error."""
        with self._lock:
            self._failures.setdefault(method, []).append((error_code, description, parameters))

    def queue_update(self, update: dict[str, Any]) -> None:
        """Make `update` available to `getUpdates`."""
        with self._lock:
            self._updates.append(update)
            self._lock.notify_all()

    def called(self, method: str) -> list[dict[str, Any]]:
        """Parameters of every call of `method` so far, in order."""
        with self._lock:
            return [c.params for c in self.calls if c.method == method]

    def methods(self) -> list[str]:
        with self._lock:
            return [c.method for c in self.calls]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 15.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> list[dict[str, Any]]:
        """Wait until `count` calls of `method` matching `where` arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c.params for c in self.calls if c.method == method and where(c.params)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{count} × {method} not received within {timeout} s; calls: "
                        f"{[(c.method, c.params) for c in self.calls]}"
                    )
                self._lock.wait(min(left, 0.2))

    async def arrived(
        self,
        method: str,
        count: int = 1,
        timeout: float = 15.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> list[dict[str, Any]]:
        """`wait_for` for coroutines: waits in a thread so the event loop keeps running."""
        return await asyncio.to_thread(self.wait_for, method, count, timeout, where)

    # -- Bot API -----------------------------------------------------------------------------

    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = str(params.get("chat_id", ""))
        chat: dict[str, Any] = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else 0}
        chat.update(
            {"type": "private", "first_name": CUSTOMER["first_name"]}
            if not chat_id.startswith("-")
            else {"type": "supergroup", "title": "Support group"}
        )
        message = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        return message

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            failures = self._failures.get(method)
            if failures:
                code, description, parameters = failures.pop(0)
                body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
                if parameters:
                    body["parameters"] = parameters
                return code, body
        result: Any
        if method == "getMe":
            result = BOT_USER
        elif method == "setWebhook":
            self.webhook_url = str(params.get("url", ""))
            return 200, {"ok": True, "result": True, "description": "Webhook was set"}
        elif method == "deleteWebhook":
            self.webhook_url = ""
            return 200, {"ok": True, "result": True, "description": "Webhook was deleted"}
        elif method == "getWebhookInfo":
            result = {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": 0,
            }
            if self.webhook_url:
                result["max_connections"] = 40
                result["ip_address"] = "203.0.113.7"
        elif method == "sendMessage":
            result = self._message(params, text=params.get("text", ""))
        elif method == "sendPhoto":
            result = self._message(
                params,
                photo=[
                    {
                        "file_id": "AgACAgQAAxkDAAIBXmUAAQ",
                        "file_unique_id": "AQADx7gxG",
                        "file_size": 1480,
                        "width": 90,
                        "height": 60,
                    }
                ],
            )
        elif method in ("sendChatAction", "answerCallbackQuery"):
            result = True
        elif method == "getUpdates":
            result = self._get_updates(params)
        else:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        return 200, {"ok": True, "result": result}

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 2.0)
        deadline = time.monotonic() + timeout
        with self._lock:
            if offset:
                # Telegram forgets every update below the offset: they are confirmed
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return list(self._updates)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.do_POST()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 2 or not parts[0].startswith("bot"):
                    return self._send(
                        404, {"ok": False, "error_code": 404, "description": "Not Found"}
                    )
                token, method = parts[0][3:], parts[1]
                params = self._params(body)
                with stub._lock:
                    stub.calls.append(ApiCall(method, token, params))
                    stub._lock.notify_all()
                if token != stub.token:
                    return self._send(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                status, answer = stub._answer(method, params)
                with stub._lock:
                    stub._lock.notify_all()
                self._send(status, answer)

            def _params(self, body: bytes) -> dict[str, Any]:
                content_type = self.headers.get("Content-Type", "")
                if content_type.startswith("application/json"):
                    return dict(json.loads(body or b"{}"))
                if content_type.startswith("multipart/form-data"):
                    message = BytesParser(policy=HTTP).parsebytes(
                        f"Content-Type: {content_type}\r\n\r\n".encode() + body
                    )
                    params: dict[str, Any] = {}
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        payload = part.get_payload(decode=True) or b""
                        params[str(name)] = _decode_value(payload.decode("utf-8", "replace"))
                    return params
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
                return {key: _decode_value(values[-1]) for key, values in form.items()}

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def bot_api_stub(token: str = TOKEN) -> Iterator[BotApiStub]:
    with BotApiStub(token) as stub:
        yield stub


# ---------------------------------------------------------------------------------------------
# Real Telegram update JSON (shapes as Telegram POSTs them to a webhook)

_update_ids = itertools.count(500_000_000)


def _private_chat(chat_id: int) -> dict[str, Any]:
    return {
        "id": chat_id,
        "first_name": CUSTOMER["first_name"],
        "last_name": CUSTOMER["last_name"],
        "username": CUSTOMER["username"],
        "type": "private",
    }


def message_update(
    chat_id: int = CUSTOMER["id"], update_id: int | None = None, **content: Any
) -> dict[str, Any]:
    """An update with a `message` carrying `content` (text, sticker, voice, photo, ...)."""
    return {
        "update_id": next(_update_ids) if update_id is None else update_id,
        "message": {
            "message_id": 1365,
            "from": {**CUSTOMER, "id": chat_id},
            "chat": _private_chat(chat_id),
            "date": 1_717_171_717,
            **content,
        },
    }


def text_update(
    text: str, chat_id: int = CUSTOMER["id"], update_id: int | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"text": text}
    if text.startswith("/"):
        command = text.split(" ", 1)[0]
        content["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
    return message_update(chat_id, update_id, **content)


def callback_update(data: str, chat_id: int = CUSTOMER["id"]) -> dict[str, Any]:
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": {**CUSTOMER, "id": chat_id},
            "message": {
                "message_id": 1366,
                "from": BOT_USER,
                "chat": _private_chat(chat_id),
                "date": 1_717_171_720,
                "text": "Did that answer your question?",
                "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": data}]]},
            },
            "chat_instance": "-8391238293749281293",
            "data": data,
        },
    }


def edited_update(text: str, chat_id: int = CUSTOMER["id"]) -> dict[str, Any]:
    return {
        "update_id": next(_update_ids),
        "edited_message": {
            "message_id": 1365,
            "from": {**CUSTOMER, "id": chat_id},
            "chat": _private_chat(chat_id),
            "date": 1_717_171_717,
            "edit_date": 1_717_171_790,
            "text": text,
        },
    }


def sticker_update(chat_id: int = CUSTOMER["id"]) -> dict[str, Any]:
    return message_update(
        chat_id,
        sticker={
            "width": 512,
            "height": 512,
            "emoji": "👍",
            "set_name": "HotCherry",
            "is_animated": True,
            "is_video": False,
            "type": "regular",
            "thumbnail": {
                "file_id": "AAMCAgADGQEAAgFfZwABHx",
                "file_unique_id": "AQADBQADwDZPE3I",
                "file_size": 5334,
                "width": 128,
                "height": 128,
            },
            "file_id": "CAACAgIAAxkBAAIBX2cAAR8rGx",
            "file_unique_id": "AgADBQADwDZPEw",
            "file_size": 23040,
        },
    )


def voice_update(chat_id: int = CUSTOMER["id"]) -> dict[str, Any]:
    return message_update(
        chat_id,
        voice={
            "duration": 2,
            "mime_type": "audio/ogg",
            "file_id": "AwACAgIAAxkBAAIBYGcAAR9Pq",
            "file_unique_id": "AgADgDwAAv2zYUs",
            "file_size": 8460,
        },
    )


def photo_update(caption: str | None = None, chat_id: int = CUSTOMER["id"]) -> dict[str, Any]:
    content: dict[str, Any] = {
        "photo": [
            {
                "file_id": "AgACAgIAAxkBAAIBYWcAAR9",
                "file_unique_id": "AQADm9kxG5",
                "file_size": 1279,
                "width": 90,
                "height": 67,
            },
            {
                "file_id": "AgACAgIAAxkBAAIBYWcAAR8",
                "file_unique_id": "AQADm9kxG6",
                "file_size": 16204,
                "width": 320,
                "height": 240,
            },
        ]
    }
    if caption is not None:
        content["caption"] = caption
    return message_update(chat_id, **content)


def my_chat_member_update(chat_id: int = CUSTOMER["id"]) -> dict[str, Any]:
    """The bot was blocked by the user: nothing to answer."""
    return {
        "update_id": next(_update_ids),
        "my_chat_member": {
            "chat": _private_chat(chat_id),
            "from": {**CUSTOMER, "id": chat_id},
            "date": 1_717_171_800,
            "old_chat_member": {"user": BOT_USER, "status": "member"},
            "new_chat_member": {"user": BOT_USER, "status": "kicked", "until_date": 0},
        },
    }
