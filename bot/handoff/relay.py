"""Copy customers' messages from Rasa's tracker store into open tickets.

While a ticket is open the Rasa conversation is paused: Rasa still logs each `user` event (with
its NLU parse) in its SQL tracker store, table `events`, and predicts nothing. The web server
polls that table (a cheap `max(id)` check first) and copies new user and bot events of
conversations with an open ticket into `handoff_messages`, masked, each at most once (unique on
ticket and event id). A ticket seen for the first time is backfilled from the start of the Rasa
session, so the operator reads what the customer already told the bot. Each ticket's cursor is
stored with it, so nothing is lost while the web server is down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.handoff.db import session_scope
from bot.handoff.masking import mask_value
from bot.handoff.models import OutboxItem, Ticket, TicketMessage
from bot.handoff.repository import HandoffRepository
from bot.handoff.states import OPEN_STATES

logger = logging.getLogger(__name__)

#: Rasa's SQL tracker store table (`rasa/core/tracker_store.py`, `SQLTrackerStore.SQLEvent`).
EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("sender_id", sa.String),
    sa.column("type_name", sa.String),
    sa.column("timestamp", sa.Float),
    sa.column("data", sa.Text),
)

#: Most events a ticket's backfill copies (the end of a long session is what matters).
BACKFILL_LIMIT = 200
#: Keys of a parse result that are not "the bot's view" of the message.
_PARSE_SKIP = {"text", "message_id", "metadata", "response_selector"}


def nlu_view(parse_data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The bot's view of a customer message: intent, confidence, entities, ranking (top 5),
    the classifier's `explanation` and any other keys the pipeline adds."""
    if not parse_data:
        return None
    view = {key: value for key, value in parse_data.items() if key not in _PARSE_SKIP}
    if isinstance(view.get("intent_ranking"), list):
        view["intent_ranking"] = view["intent_ranking"][:5]
    if isinstance(view.get("entities"), list):
        view["entities"] = [
            {
                key: entity.get(key)
                for key in ("entity", "value", "role", "group", "confidence_entity", "extractor")
                if entity.get(key) is not None
            }
            for entity in view["entities"]
            if isinstance(entity, dict)
        ]
    return view or None


def _bot_text(data: dict[str, Any]) -> str:
    text = data.get("text")
    if text:
        return str(text)
    payload = data.get("data") or {}
    if payload.get("buttons"):
        return "[buttons] " + " | ".join(str(b.get("title", "")) for b in payload["buttons"])
    if payload.get("custom"):
        return "[custom message]"
    return "[rich message]"


@dataclass
class EventRelay:
    """Polls Rasa's `events` table; one instance per web server process."""

    repository: HandoffRepository
    _last_max_id: int | None = None
    _last_tickets: tuple[tuple[int, int | None], ...] = ()
    _has_events_table: bool = False
    #: Events ids re-read behind the cursor (0 for SQLite, see `_copy_ticket`).
    lookback: int = -1

    def __post_init__(self) -> None:
        if self.lookback < 0:
            self.lookback = 0 if self.repository.engine.dialect.name == "sqlite" else 100

    def _events_table_exists(self, session: Session) -> bool:
        if not self._has_events_table:
            self._has_events_table = sa.inspect(session.connection()).has_table("events")
        return self._has_events_table

    def run_once(self) -> list[int]:
        """Copy what is new; returns the ids of the transcript messages created."""
        engine = self.repository.engine
        with session_scope(engine) as session:
            if not self._events_table_exists(session):
                return []
            tickets = session.execute(
                sa.select(Ticket.id, Ticket.sender_id, Ticket.relay_cursor, Ticket.opened_at).where(
                    Ticket.state.in_([s.value for s in OPEN_STATES])
                )
            ).all()
            max_id = session.execute(sa.select(sa.func.max(EVENTS.c.id))).scalar() or 0
            fingerprint = tuple((t.id, t.relay_cursor) for t in tickets)
            if max_id == self._last_max_id and fingerprint == self._last_tickets:
                return []
            new_ids: list[int] = []
            cursors: list[tuple[int, int | None]] = []
            for ticket in tickets:
                created, cursor = self._copy_ticket(session, ticket, max_id)
                new_ids.extend(created)
                cursors.append((ticket.id, cursor))
        self._last_max_id = max_id
        self._last_tickets = tuple(cursors)
        return new_ids

    def _copy_ticket(self, session: Session, ticket: Any, max_id: int) -> tuple[list[int], int]:
        """Copy one ticket's new events; returns (new message ids, the ticket's new cursor)."""
        if ticket.relay_cursor is None:
            floor = self._session_start(session, ticket.sender_id)
            newest = [
                row.id
                for row in session.execute(
                    sa.select(EVENTS.c.id)
                    .where(EVENTS.c.sender_id == ticket.sender_id, EVENTS.c.id > floor)
                    .order_by(EVENTS.c.id.desc())
                    .limit(BACKFILL_LIMIT)
                )
            ]
            floor = min(newest) - 1 if newest else floor
        else:
            # PostgreSQL may commit a lower id after a higher one is visible: look back a little
            # (copies are deduplicated); SQLite serialises writers, so no gap can appear.
            floor = max(ticket.relay_cursor - self.lookback, 0)
        if floor >= max_id:
            if ticket.relay_cursor is not None:
                return [], ticket.relay_cursor
            self._set_cursor(session, ticket.id, max(floor, 0))
            return [], max(floor, 0)
        rows = session.execute(
            sa.select(EVENTS.c.id, EVENTS.c.type_name, EVENTS.c.timestamp, EVENTS.c.data)
            .where(
                EVENTS.c.sender_id == ticket.sender_id,
                EVENTS.c.id > floor,
                EVENTS.c.id <= max_id,
                EVENTS.c.type_name.in_(("user", "bot", "slot", "session_started")),
            )
            .order_by(EVENTS.c.id)
        ).all()
        created: list[int] = []
        for row in rows:
            try:
                data = json.loads(row.data or "{}")
            except ValueError:
                logger.warning("skipping unreadable Rasa event %s", row.id)
                continue
            timestamp = float(row.timestamp or data.get("timestamp") or 0.0)
            if row.type_name == "user":
                message_id = self.repository.add_relayed_message(
                    session,
                    ticket.id,
                    "customer",
                    str(data.get("text") or ""),
                    timestamp,
                    row.id,
                    nlu=nlu_view(data.get("parse_data")),
                )
            elif row.type_name == "bot":
                metadata = data.get("metadata") or {}
                if metadata.get("from_human"):
                    if timestamp >= ticket.opened_at:
                        continue  # this ticket's own replies are stored by the console
                    message_id = self.repository.add_relayed_message(
                        session,
                        ticket.id,
                        "agent",
                        _bot_text(data),
                        timestamp,
                        row.id,
                        agent_name=str(metadata.get("agent_name") or "operator"),
                    )
                else:
                    message_id = self.repository.add_relayed_message(
                        session, ticket.id, "bot", _bot_text(data), timestamp, row.id
                    )
            elif row.type_name == "slot":
                self._attach_slot(session, ticket.id, row.id, data)
                message_id = None
            else:
                message_id = self._repause(session, ticket, row.id, timestamp)
            if message_id is not None:
                created.append(message_id)
        self._set_cursor(session, ticket.id, max_id)
        return created, max_id

    def _repause(
        self, session: Session, ticket: Any, event_id: int, timestamp: float
    ) -> int | None:
        """Rasa started a new session (the customer came back after `session_expiration_time`),
        which un-pauses the conversation: queue a `pause` so the bot stays quiet while the
        ticket is open, and note it in the transcript."""
        if ticket.relay_cursor is None:
            return None  # backfill: the session start predates this ticket
        message_id = self.repository.add_relayed_message(
            session,
            ticket.id,
            "system",
            "The customer's chat session restarted after a long pause; the bot was paused again.",
            timestamp,
            event_id,
        )
        if message_id is not None:  # first time this session start is seen
            session.add(
                OutboxItem(
                    ticket_id=ticket.id,
                    sender_id=ticket.sender_id,
                    events=json.dumps([{"event": "pause"}]),
                    created_at=timestamp,
                    attempts=0,
                )
            )
        return message_id

    @staticmethod
    def _session_start(session: Session, sender_id: str) -> int:
        """Events id of the conversation's latest `session_started` (0 if none)."""
        return int(
            session.execute(
                sa.select(sa.func.max(EVENTS.c.id)).where(
                    EVENTS.c.sender_id == sender_id, EVENTS.c.type_name == "session_started"
                )
            ).scalar()
            or 0
        )

    @staticmethod
    def _set_cursor(session: Session, ticket_id: int, cursor: int) -> None:
        session.execute(
            sa.update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(relay_cursor=cursor)
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    def _attach_slot(session: Session, ticket_id: int, event_id: int, data: dict[str, Any]) -> None:
        """Show a slot Rasa set right after a customer message beside that message."""
        message = session.execute(
            sa.select(TicketMessage)
            .where(
                TicketMessage.ticket_id == ticket_id,
                TicketMessage.author == "customer",
                TicketMessage.rasa_event_id < event_id,
            )
            .order_by(TicketMessage.rasa_event_id.desc())
            .limit(1)
        ).scalar()
        if message is None or not data.get("name"):
            return
        nlu = json.loads(message.nlu) if message.nlu else {}
        nlu.setdefault("slots", {})[str(data["name"])] = mask_value(data.get("value"))
        message.nlu = json.dumps(nlu)
