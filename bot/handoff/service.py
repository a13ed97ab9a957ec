"""The handoff service of the web server: relay, delivery and live updates in one place.

One background task polls Rasa's tracker store (`EventRelay`, every `poll_interval_s`) and
delivers queued events to Rasa (the outbox: operators' replies, hand-backs), retrying while Rasa
is down. Console connections subscribe to live events. Database work runs in worker threads so
the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bot.handoff.config import HandoffConfig
from bot.handoff.errors import RasaUnavailableError
from bot.handoff.rasa_client import RasaClient, agent_reply_events, hand_back_events
from bot.handoff.relay import EventRelay
from bot.handoff.repository import HandoffRepository, MessageView, TicketView
from bot.handoff.states import TicketEvent, TicketState

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between polls of Rasa's tracker store (customer → console latency is about half).
POLL_INTERVAL_S = 0.2
#: Seconds before retrying a delivery Rasa did not accept (doubles up to the maximum).
RETRY_MIN_S, RETRY_MAX_S = 1.0, 15.0


class Subscriber:
    """One live console connection: a queue of events for one operator."""

    def __init__(self, operator_id: int) -> None:
        self.operator_id = operator_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)


def visible_to(ticket: TicketView, operator_id: int) -> bool:
    """Whether an operator may read a ticket: waiting ones (to pick), their own, and closed
    ones they handled."""
    if ticket.state is TicketState.WAITING:
        return True
    return ticket.agent_id == operator_id


class HandoffService:
    """Ticket operations for the console, with delivery to Rasa and live events."""

    def __init__(
        self,
        repository: HandoffRepository,
        rasa: RasaClient,
        config: HandoffConfig,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.repository = repository
        self.rasa = rasa
        self.config = config
        self.relay = EventRelay(repository)
        self.poll_interval_s = poll_interval_s
        self._subscribers: set[Subscriber] = set()
        self._deliver_lock = asyncio.Lock()
        self._retry_at = 0.0
        self._retry_delay = RETRY_MIN_S
        self._fingerprint: object = None
        self._task: asyncio.Task[None] | None = None

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    async def _db(function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def subscribe(self, operator_id: int) -> Subscriber:
        subscriber = Subscriber(operator_id)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def _publish(self, event: dict[str, Any], ticket: TicketView | None = None) -> None:
        for subscriber in list(self._subscribers):
            if ticket is not None and not visible_to(ticket, subscriber.operator_id):
                continue
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                logger.warning("a console is not reading its live events; dropping it")
                self._subscribers.discard(subscriber)

    async def _publish_messages(self, messages: list[MessageView]) -> None:
        tickets: dict[int, TicketView] = {}
        for message in messages:
            if message.ticket_id not in tickets:
                tickets[message.ticket_id] = await self._db(
                    self.repository.get_ticket, message.ticket_id
                )
            self._publish(
                {"type": "message", "message": message.as_dict()}, tickets[message.ticket_id]
            )

    def _publish_queue(self) -> None:
        self._publish({"type": "queue"})

    # -- background loop -------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay/delivery loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="handoff-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.rasa.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep relaying whatever one poll hit (e.g. a locked database)
                logger.exception("handoff relay poll failed; retrying")
            await asyncio.sleep(self.poll_interval_s)

    async def tick(self) -> None:
        """One poll: relay new customer messages, push queue changes, deliver due items."""
        new_ids = await self._db(self.relay.run_once)
        if new_ids:
            await self._publish_messages(await self._db(self.repository.messages_by_id, new_ids))
        fingerprint = await self._db(self.repository.open_tickets_fingerprint)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self._publish_queue()
        if time.monotonic() >= self._retry_at:
            await self.deliver_pending()

    async def deliver_pending(self) -> int:
        """Post undelivered outbox items to Rasa in order; returns how many were delivered.

        Items of a conversation whose earlier item failed wait, so replies never overtake each
        other or the hand-back.
        """
        delivered = 0
        async with self._deliver_lock:
            blocked: set[str] = set()
            for item in await self._db(self.repository.pending_outbox):
                if item.sender_id in blocked:
                    continue
                try:
                    await self.rasa.post_events(item.sender_id, item.events)
                except RasaUnavailableError as e:
                    blocked.add(item.sender_id)
                    await self._db(self.repository.mark_failed, item.id, str(e))
                    logger.warning(
                        "delivery to conversation of ticket %s deferred: %s", item.ticket_id, e
                    )
                    continue
                delivered += 1
                message_id = await self._db(self.repository.mark_delivered, item.id)
                if message_id is not None:
                    await self._publish_messages(
                        await self._db(self.repository.messages_by_id, [message_id])
                    )
            if blocked:
                self._retry_at = time.monotonic() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
            else:
                self._retry_at = 0.0
                self._retry_delay = RETRY_MIN_S
        return delivered

    # -- operations (the console calls these) ----------------------------------------------

    async def claim(self, ticket_id: int, operator_id: int) -> TicketView:
        ticket = await self._db(self.repository.claim, ticket_id, operator_id)
        self._publish_queue()
        return ticket

    async def release(self, ticket_id: int, operator_id: int) -> TicketView:
        ticket = await self._db(self.repository.release, ticket_id, operator_id)
        self._publish_queue()
        return ticket

    async def reply(
        self, ticket_id: int, operator_id: int, text: str, client_msg_id: str | None
    ) -> MessageView:
        """Store the reply, try to deliver it now, and return it with its delivery state."""
        message = await self._db(
            self.repository.add_agent_message,
            ticket_id,
            operator_id,
            text,
            client_msg_id,
            agent_reply_events,
        )
        await self._publish_messages([message])
        await self.deliver_pending()
        return (await self._db(self.repository.messages_by_id, [message.id]))[0]

    async def close(
        self, ticket_id: int, operator_id: int, event: TicketEvent, note: str | None = None
    ) -> TicketView:
        """Hand back or resolve; the customer is told and the bot resumes (retried if Rasa is down)."""
        text = (
            self.config.handed_back_message
            if event is TicketEvent.HAND_BACK
            else self.config.resolved_message
        )
        ticket = await self._db(
            self.repository.close, ticket_id, operator_id, event, hand_back_events(text), text, note
        )
        self._publish_queue()
        await self.deliver_pending()
        return ticket
