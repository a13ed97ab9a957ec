"""Post events to a conversation through Rasa's HTTP API (`rasa run --enable-api`).

`POST /conversations/{id}/tracker/events?execute_side_effects=true&output_channel=latest`
appends the events under the conversation's lock and, for `bot` events, sends them through the
output channel the customer last wrote from (`rasa/server.py`, `append_events` and
`_get_output_channel`), so an operator's reply reaches the customer on Telegram or the web
widget and stays in the tracker. A `resume` event un-pauses the conversation.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.handoff.errors import RasaUnavailableError

logger = logging.getLogger(__name__)


def agent_reply_events(text: str, agent_name: str) -> list[dict[str, Any]]:
    """The `bot` event that carries an operator's reply (the channels render `from_human`)."""
    return [
        {"event": "bot", "text": text, "metadata": {"from_human": True, "agent_name": agent_name}}
    ]


def hand_back_events(message: str) -> list[dict[str, Any]]:
    """Tell the customer, resume the bot, reset the handoff slots, and listen.

    The final `action_listen` matters: a paused conversation ends on `action_handoff` (Rasa
    predicts nothing after `ConversationPaused`), and without a listen the customer's next
    message would not match rules written as "intent → action" and fall back.
    """
    return [
        {"event": "bot", "text": message, "metadata": {"handoff": "ended"}},
        {"event": "resume"},
        {"event": "slot", "name": "handoff_active", "value": False},
        {"event": "slot", "name": "handoff_reason", "value": None},
        {"event": "slot", "name": "fallback_count", "value": 0},
        {"event": "slot", "name": "forms_abandoned", "value": 0},
        {"event": "action", "name": "action_listen"},
    ]


class RasaClient:
    """Minimal async client for the Rasa HTTP API (one `aiohttp` session, reused)."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def post_events(self, sender_id: str, events: list[dict[str, Any]]) -> None:
        """Append `events` to the conversation and execute their side effects.

        Raises:
            RasaUnavailableError: Rasa is down, refused the token or failed (the message says
                which, never the token).
        """
        params = {
            "execute_side_effects": "true",
            "output_channel": "latest",
            "include_events": "NONE",
        }
        if self._token:
            params["token"] = self._token
        url = f"{self.base_url}/conversations/{quote(sender_id, safe='')}/tracker/events"
        try:
            client = await self._client()
            async with client.post(url, params=params, json=events) as response:
                if response.status >= 300:
                    body = (await response.text())[:300]
                    hint = " (check FUSIONDESK_RASA_TOKEN)" if response.status in (401, 403) else ""
                    raise RasaUnavailableError(f"Rasa answered {response.status}{hint}: {body}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RasaUnavailableError(
                f"cannot reach Rasa at {self.base_url}: {type(e).__name__}"
            ) from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
