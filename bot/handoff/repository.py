"""Persistence of tickets, their messages, operators and console sessions.

Every state change is one conditional `UPDATE ... WHERE id = :id AND state = :from` whose row
count says whether it happened, so two operators (or two processes) racing for the same ticket
can never both win; the pure `states.transition` decides what the target state is. Each public
method is one transaction. Card numbers are masked before anything is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.handoff.db import session_scope
from bot.handoff.errors import (
    AlreadyClaimedError,
    DuplicateMessageError,
    NotYourTicketError,
    OperatorExistsError,
    OperatorNotFoundError,
    TicketClosedError,
    TicketNotFoundError,
)
from bot.handoff.masking import mask_card_numbers, mask_value
from bot.handoff.models import ConsoleSession, Operator, OutboxItem, Ticket, TicketMessage
from bot.handoff.states import OPEN_STATES, TicketEvent, TicketState, source_of, transition

_OPEN = tuple(state.value for state in OPEN_STATES)

#: Builds the Rasa events that deliver an agent's reply: (text, agent name) → events.
ReplyEvents = Callable[[str, str], list[dict[str, Any]]]


@dataclass(frozen=True)
class TicketView:
    """A ticket as the console and the actions see it."""

    id: int
    sender_id: str
    channel: str | None
    state: TicketState
    reason: str
    agent_id: int | None
    agent_name: str | None
    opened_at: float
    claimed_at: float | None
    closed_at: float | None
    resolution_note: str | None
    after_hours: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sender_id": self.sender_id,
            "channel": self.channel,
            "state": self.state.value,
            "reason": self.reason,
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "opened_at": self.opened_at,
            "claimed_at": self.claimed_at,
            "closed_at": self.closed_at,
            "resolution_note": self.resolution_note,
            "after_hours": self.after_hours,
        }


@dataclass(frozen=True)
class MessageView:
    """One transcript line."""

    id: int
    ticket_id: int
    author: str
    text: str
    created_at: float
    agent_name: str | None
    nlu: dict[str, Any] | None
    delivery: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ticket_id": self.ticket_id,
            "author": self.author,
            "text": self.text,
            "created_at": self.created_at,
            "agent_name": self.agent_name,
            "nlu": self.nlu,
            "delivery": self.delivery,
        }


@dataclass(frozen=True)
class OutboxView:
    """Events waiting to be posted to Rasa for one conversation."""

    id: int
    ticket_id: int
    sender_id: str
    events: list[dict[str, Any]]
    message_id: int | None
    attempts: int


@dataclass(frozen=True)
class OperatorView:
    """An operator account (never the password hash)."""

    id: int
    name: str
    active: bool
    created_at: float
    last_login_at: float | None


@dataclass(frozen=True)
class SessionView:
    """A valid console session and its operator."""

    operator: OperatorView
    csrf_token: str
    expires_at: float


def _ticket_view(ticket: Ticket, agent_name: str | None) -> TicketView:
    return TicketView(
        id=ticket.id,
        sender_id=ticket.sender_id,
        channel=ticket.channel,
        state=TicketState(ticket.state),
        reason=ticket.reason,
        agent_id=ticket.agent_id,
        agent_name=agent_name,
        opened_at=ticket.opened_at,
        claimed_at=ticket.claimed_at,
        closed_at=ticket.closed_at,
        resolution_note=ticket.resolution_note,
        after_hours=bool(ticket.after_hours),
    )


def _operator_view(operator: Operator) -> OperatorView:
    return OperatorView(
        id=operator.id,
        name=operator.name,
        active=bool(operator.active),
        created_at=operator.created_at,
        last_login_at=operator.last_login_at,
    )


class HandoffRepository:
    """All handoff reads and writes, over one SQLAlchemy engine."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    # -- tickets ---------------------------------------------------------------------------

    def _load_ticket(self, session: Session, ticket_id: int) -> TicketView:
        row = session.execute(
            sa.select(Ticket, Operator.name)
            .outerjoin(Operator, Operator.id == Ticket.agent_id)
            .where(Ticket.id == ticket_id)
        ).first()
        if row is None:
            raise TicketNotFoundError(f"ticket {ticket_id} does not exist")
        return _ticket_view(row[0], row[1])

    def get_ticket(self, ticket_id: int) -> TicketView:
        """The ticket with this id (`TicketNotFoundError` if none)."""
        with session_scope(self.engine) as session:
            return self._load_ticket(session, ticket_id)

    def open_ticket_for(self, sender_id: str) -> TicketView | None:
        """The open (waiting or with an agent) ticket of a conversation, if any."""
        with session_scope(self.engine) as session:
            ticket_id = session.execute(
                sa.select(Ticket.id).where(Ticket.sender_id == sender_id, Ticket.state.in_(_OPEN))
            ).scalar()
            return None if ticket_id is None else self._load_ticket(session, ticket_id)

    def open_ticket(
        self, sender_id: str, reason: str, channel: str | None, after_hours: bool = False
    ) -> tuple[TicketView, bool]:
        """Open a waiting ticket for the conversation, or return the one already open.

        Returns:
            (ticket, created): `created` is False when a ticket was already open.
        """
        transition(TicketState.BOT, TicketEvent.OPEN)  # documents the step; always legal
        existing = self.open_ticket_for(sender_id)
        if existing is not None:
            return existing, False
        now = self.clock()
        try:
            with session_scope(self.engine) as session:
                ticket = Ticket(
                    sender_id=sender_id,
                    channel=channel,
                    state=TicketState.WAITING.value,
                    reason=reason,
                    opened_at=now,
                    updated_at=now,
                    after_hours=after_hours,
                )
                session.add(ticket)
                session.flush()
                return self._load_ticket(session, ticket.id), True
        except IntegrityError:
            # Another process opened one at the same moment (unique open ticket per sender).
            existing = self.open_ticket_for(sender_id)
            if existing is None:
                raise
            return existing, False

    def queue_position(self, ticket_id: int) -> int:
        """1-based place of a waiting ticket in the queue (oldest first); 0 if not waiting."""
        with session_scope(self.engine) as session:
            opened_at = session.execute(
                sa.select(Ticket.opened_at).where(
                    Ticket.id == ticket_id, Ticket.state == TicketState.WAITING.value
                )
            ).scalar()
            if opened_at is None:
                return 0
            ahead = session.execute(
                sa.select(sa.func.count(Ticket.id)).where(
                    Ticket.state == TicketState.WAITING.value,
                    sa.or_(
                        Ticket.opened_at < opened_at,
                        sa.and_(Ticket.opened_at == opened_at, Ticket.id < ticket_id),
                    ),
                )
            ).scalar_one()
            return int(ahead) + 1

    def list_tickets(self, closed_since: float | None = None) -> list[TicketView]:
        """Open tickets (waiting oldest first, then with an agent), plus those closed since
        `closed_since` (newest first)."""
        with session_scope(self.engine) as session:
            condition = Ticket.state.in_(_OPEN)
            if closed_since is not None:
                condition = sa.or_(condition, Ticket.closed_at >= closed_since)
            rows = session.execute(
                sa.select(Ticket, Operator.name)
                .outerjoin(Operator, Operator.id == Ticket.agent_id)
                .where(condition)
                .order_by(Ticket.opened_at, Ticket.id)
            ).all()
            views = [_ticket_view(ticket, name) for ticket, name in rows]
        order = {TicketState.WAITING: 0, TicketState.WITH_AGENT: 1}
        return sorted(
            views,
            key=lambda t: (
                order.get(t.state, 2),
                t.opened_at if t.state.is_open else -(t.closed_at or 0),
            ),
        )

    def _step(
        self,
        session: Session,
        ticket_id: int,
        event: TicketEvent,
        operator_id: int,
        values: dict[str, Any],
    ) -> TicketView:
        """Apply `event` with one conditional UPDATE; explain precisely when it did not apply."""
        source = source_of(event)
        target = transition(source, event)
        condition = [Ticket.id == ticket_id, Ticket.state == source.value]
        if event is not TicketEvent.CLAIM:
            condition.append(Ticket.agent_id == operator_id)
        result = session.execute(
            sa.update(Ticket)
            .where(*condition)
            .values(state=target.value, updated_at=self.clock(), **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            return self._load_ticket(session, ticket_id)
        current = self._load_ticket(session, ticket_id)  # raises TicketNotFoundError
        if not current.state.is_open:
            raise TicketClosedError(
                f"ticket {ticket_id} is already {current.state.value.replace('_', ' ')}; "
                "the customer is back with the bot"
            )
        if event is TicketEvent.CLAIM:
            raise AlreadyClaimedError(
                f"ticket {ticket_id} was already claimed by {current.agent_name or 'another operator'}"
            )
        if current.agent_id != operator_id:
            raise NotYourTicketError(
                f"ticket {ticket_id} belongs to {current.agent_name or 'no one yet'}; claim it first"
                if current.agent_id is None
                else f"ticket {ticket_id} belongs to {current.agent_name}"
            )
        transition(current.state, event)  # raises IllegalTransitionError with the reason
        raise AssertionError("unreachable")  # pragma: no cover

    def claim(self, ticket_id: int, operator_id: int) -> TicketView:
        """Give a waiting ticket to the operator; exactly one of concurrent claims wins.

        Raises:
            AlreadyClaimedError: someone else has it. TicketClosedError: it is closed.
            TicketNotFoundError: no such ticket.
        """
        with session_scope(self.engine) as session:
            return self._step(
                session,
                ticket_id,
                TicketEvent.CLAIM,
                operator_id,
                {"agent_id": operator_id, "claimed_at": self.clock()},
            )

    def release(self, ticket_id: int, operator_id: int) -> TicketView:
        """Put the operator's ticket back in the queue for someone else."""
        with session_scope(self.engine) as session:
            return self._step(
                session,
                ticket_id,
                TicketEvent.RELEASE,
                operator_id,
                {"agent_id": None, "claimed_at": None},
            )

    def close(
        self,
        ticket_id: int,
        operator_id: int,
        event: TicketEvent,
        rasa_events: list[dict[str, Any]],
        system_text: str,
        note: str | None = None,
    ) -> TicketView:
        """Hand back or resolve the operator's ticket, and queue `rasa_events` (resume, slot
        resets, a goodbye) for delivery, atomically: the customer is never left paused."""
        if event not in (TicketEvent.HAND_BACK, TicketEvent.RESOLVE):
            raise ValueError(f"close takes hand_back or resolve, not {event}")
        now = self.clock()
        with session_scope(self.engine) as session:
            values: dict[str, Any] = {"closed_at": now}
            if note is not None:
                values["resolution_note"] = mask_card_numbers(note)
            view = self._step(session, ticket_id, event, operator_id, values)
            session.add(
                TicketMessage(
                    ticket_id=ticket_id,
                    author="system",
                    text=mask_card_numbers(system_text),
                    created_at=now,
                )
            )
            session.add(
                OutboxItem(
                    ticket_id=ticket_id,
                    sender_id=view.sender_id,
                    events=json.dumps(rasa_events),
                    created_at=now,
                    attempts=0,
                )
            )
            return view

    # -- messages --------------------------------------------------------------------------

    def add_agent_message(
        self,
        ticket_id: int,
        operator_id: int,
        text: str,
        client_msg_id: str | None,
        build_events: ReplyEvents,
    ) -> MessageView:
        """Store an operator's reply (masked) and queue its delivery to the customer.

        Raises:
            TicketClosedError: the ticket is resolved or handed back.
            NotYourTicketError: another operator (or nobody) holds it.
            DuplicateMessageError: this `client_msg_id` was already accepted.
        """
        now = self.clock()
        masked = mask_card_numbers(text)
        try:
            with session_scope(self.engine) as session:
                # Lock the ticket row in its current state first: a concurrent resolve either
                # happens before (we refuse) or after (the reply is delivered first).
                touched = session.execute(
                    sa.update(Ticket)
                    .where(
                        Ticket.id == ticket_id,
                        Ticket.state == TicketState.WITH_AGENT.value,
                        Ticket.agent_id == operator_id,
                    )
                    .values(updated_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if touched != 1:
                    current = self._load_ticket(session, ticket_id)
                    if not current.state.is_open:
                        raise TicketClosedError(
                            f"ticket {ticket_id} is {current.state.value.replace('_', ' ')}: the "
                            "customer is back with the bot, so the reply was not sent"
                        )
                    raise NotYourTicketError(
                        f"ticket {ticket_id} is not yours; claim it before replying"
                        if current.agent_id is None
                        else f"ticket {ticket_id} belongs to {current.agent_name}"
                    )
                agent_name = session.execute(
                    sa.select(Operator.name).where(Operator.id == operator_id)
                ).scalar_one()
                sender_id = session.execute(
                    sa.select(Ticket.sender_id).where(Ticket.id == ticket_id)
                ).scalar_one()
                message = TicketMessage(
                    ticket_id=ticket_id,
                    author="agent",
                    text=masked,
                    created_at=now,
                    agent_id=operator_id,
                    client_msg_id=client_msg_id,
                    delivery="pending",
                )
                session.add(message)
                session.flush()
                session.add(
                    OutboxItem(
                        ticket_id=ticket_id,
                        sender_id=sender_id,
                        events=json.dumps(build_events(masked, agent_name)),
                        message_id=message.id,
                        created_at=now,
                        attempts=0,
                    )
                )
                return MessageView(
                    id=message.id,
                    ticket_id=ticket_id,
                    author="agent",
                    text=masked,
                    created_at=now,
                    agent_name=agent_name,
                    nlu=None,
                    delivery="pending",
                )
        except IntegrityError as e:
            raise DuplicateMessageError(
                f"this reply (id {client_msg_id}) was already sent; a replayed request is ignored"
            ) from e

    def add_relayed_message(
        self,
        session: Session,
        ticket_id: int,
        author: str,
        text: str,
        created_at: float,
        rasa_event_id: int,
        nlu: dict[str, Any] | None = None,
        agent_name: str | None = None,
    ) -> int | None:
        """Copy one Rasa event into the transcript inside the caller's transaction.

        Returns:
            The new message id, or None when this event was copied before.
        """
        exists = session.execute(
            sa.select(TicketMessage.id).where(
                TicketMessage.ticket_id == ticket_id, TicketMessage.rasa_event_id == rasa_event_id
            )
        ).scalar()
        if exists is not None:
            return None
        if agent_name:
            nlu = {**(nlu or {}), "agent_name": agent_name}
        message = TicketMessage(
            ticket_id=ticket_id,
            author=author,
            text=mask_card_numbers(text or ""),
            created_at=created_at,
            rasa_event_id=rasa_event_id,
            nlu=json.dumps(mask_value(nlu)) if nlu else None,
        )
        session.add(message)
        session.flush()
        return int(message.id)

    def messages(self, ticket_id: int, after_id: int = 0) -> list[MessageView]:
        """The ticket's transcript in order (only messages with id > `after_id`)."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                sa.select(TicketMessage, Operator.name)
                .outerjoin(Operator, Operator.id == TicketMessage.agent_id)
                .where(TicketMessage.ticket_id == ticket_id, TicketMessage.id > after_id)
                .order_by(TicketMessage.created_at, TicketMessage.id)
            ).all()
            return [self._message_view(message, name) for message, name in rows]

    def messages_by_id(self, ids: Sequence[int]) -> list[MessageView]:
        """Messages with these ids (for live pushes)."""
        if not ids:
            return []
        with session_scope(self.engine) as session:
            rows = session.execute(
                sa.select(TicketMessage, Operator.name)
                .outerjoin(Operator, Operator.id == TicketMessage.agent_id)
                .where(TicketMessage.id.in_(list(ids)))
                .order_by(TicketMessage.id)
            ).all()
            return [self._message_view(message, name) for message, name in rows]

    @staticmethod
    def _message_view(message: TicketMessage, agent_name: str | None) -> MessageView:
        nlu = json.loads(message.nlu) if message.nlu else None
        if agent_name is None and nlu and "agent_name" in nlu:
            agent_name = nlu.pop("agent_name")
        return MessageView(
            id=message.id,
            ticket_id=message.ticket_id,
            author=message.author,
            text=message.text,
            created_at=message.created_at,
            agent_name=agent_name,
            nlu=nlu or None,
            delivery=message.delivery,
        )

    # -- outbox ----------------------------------------------------------------------------

    def pending_outbox(self, limit: int = 50) -> list[OutboxView]:
        """Undelivered items, oldest first."""
        with session_scope(self.engine) as session:
            items = session.execute(
                sa.select(OutboxItem)
                .where(OutboxItem.delivered_at.is_(None))
                .order_by(OutboxItem.id)
                .limit(limit)
            ).scalars()
            return [
                OutboxView(
                    id=item.id,
                    ticket_id=item.ticket_id,
                    sender_id=item.sender_id,
                    events=json.loads(item.events),
                    message_id=item.message_id,
                    attempts=item.attempts,
                )
                for item in items
            ]

    def mark_delivered(self, outbox_id: int) -> int | None:
        """Record a delivery; returns the agent message it delivered, if any."""
        now = self.clock()
        with session_scope(self.engine) as session:
            item = session.get(OutboxItem, outbox_id)
            if item is None:
                return None
            item.delivered_at = now
            item.attempts += 1
            item.last_error = None
            if item.message_id is not None:
                session.execute(
                    sa.update(TicketMessage)
                    .where(TicketMessage.id == item.message_id)
                    .values(delivery="delivered")
                    .execution_options(synchronize_session=False)
                )
            return item.message_id

    def mark_failed(self, outbox_id: int, error: str) -> None:
        """Record a failed attempt (the item stays pending and is retried)."""
        with session_scope(self.engine) as session:
            item = session.get(OutboxItem, outbox_id)
            if item is not None:
                item.attempts += 1
                item.last_error = error[:500]

    # -- operators -------------------------------------------------------------------------

    def add_operator(self, name: str, password_hash: str) -> OperatorView:
        """Create an operator (`OperatorExistsError` if the name is taken)."""
        try:
            with session_scope(self.engine) as session:
                operator = Operator(
                    name=name, password_hash=password_hash, active=True, created_at=self.clock()
                )
                session.add(operator)
                session.flush()
                return _operator_view(operator)
        except IntegrityError as e:
            raise OperatorExistsError(f"an operator named {name!r} already exists") from e

    def list_operators(self) -> list[OperatorView]:
        """All operators by name."""
        with session_scope(self.engine) as session:
            return [
                _operator_view(o)
                for o in session.execute(sa.select(Operator).order_by(Operator.name)).scalars()
            ]

    def credentials(self, name: str) -> tuple[OperatorView, str] | None:
        """(operator, password hash) of an active operator, or None."""
        with session_scope(self.engine) as session:
            operator = session.execute(
                sa.select(Operator).where(Operator.name == name, Operator.active.is_(True))
            ).scalar()
            return None if operator is None else (_operator_view(operator), operator.password_hash)

    def set_password_hash(self, operator_id: int, password_hash: str) -> None:
        """Store a new hash (after a rehash on sign-in, or a password change)."""
        with session_scope(self.engine) as session:
            session.execute(
                sa.update(Operator)
                .where(Operator.id == operator_id)
                .values(password_hash=password_hash)
            )

    def deactivate_operator(self, name: str) -> None:
        """Disable an operator and end their sessions; their tickets go back to the queue."""
        with session_scope(self.engine) as session:
            operator = session.execute(sa.select(Operator).where(Operator.name == name)).scalar()
            if operator is None:
                raise OperatorNotFoundError(
                    f"no operator named {name!r}; see `fusiondesk operator list`"
                )
            operator.active = False
            session.execute(
                sa.delete(ConsoleSession).where(ConsoleSession.operator_id == operator.id)
            )
            session.execute(
                sa.update(Ticket)
                .where(Ticket.agent_id == operator.id, Ticket.state == TicketState.WITH_AGENT.value)
                .values(
                    state=transition(TicketState.WITH_AGENT, TicketEvent.RELEASE).value,
                    agent_id=None,
                    claimed_at=None,
                    updated_at=self.clock(),
                )
            )

    # -- console sessions ------------------------------------------------------------------

    def create_session(
        self, operator_id: int, token_hash: str, csrf_token: str, ttl_s: float
    ) -> float:
        """Store a new session; returns its expiry. Also forgets expired sessions."""
        now = self.clock()
        with session_scope(self.engine) as session:
            session.execute(sa.delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            session.add(
                ConsoleSession(
                    token_hash=token_hash,
                    csrf_token=csrf_token,
                    operator_id=operator_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + ttl_s,
                )
            )
            session.execute(
                sa.update(Operator).where(Operator.id == operator_id).values(last_login_at=now)
            )
            return now + ttl_s

    def session_for(self, token_hash: str, ttl_s: float) -> SessionView | None:
        """The live session with this token hash, its expiry slid forward; None if expired."""
        now = self.clock()
        with session_scope(self.engine) as session:
            row = session.execute(
                sa.select(ConsoleSession, Operator)
                .join(Operator, Operator.id == ConsoleSession.operator_id)
                .where(
                    ConsoleSession.token_hash == token_hash,
                    ConsoleSession.expires_at > now,
                    Operator.active.is_(True),
                )
            ).first()
            if row is None:
                return None
            console_session, operator = row
            # Slide the expiry at most once a minute (cheap on every request).
            if now - console_session.last_seen_at > 60:
                console_session.last_seen_at = now
                console_session.expires_at = now + ttl_s
            return SessionView(
                operator=_operator_view(operator),
                csrf_token=console_session.csrf_token,
                expires_at=console_session.expires_at,
            )

    def delete_session(self, token_hash: str) -> None:
        """Sign out: the token stops working at once."""
        with session_scope(self.engine) as session:
            session.execute(
                sa.delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash)
            )

    def operators_online(self) -> int:
        """Operators with a live console session (for the wait estimate)."""
        with session_scope(self.engine) as session:
            return int(
                session.execute(
                    sa.select(sa.func.count(sa.distinct(ConsoleSession.operator_id))).where(
                        ConsoleSession.expires_at > self.clock()
                    )
                ).scalar_one()
            )

    def open_tickets_fingerprint(self) -> tuple[tuple[int, str, int | None, float], ...]:
        """(id, state, agent, updated) of open and recently changed tickets: changes when the
        queue changes, so the console can be told to refresh."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                sa.select(Ticket.id, Ticket.state, Ticket.agent_id, Ticket.updated_at)
                .where(sa.or_(Ticket.state.in_(_OPEN), Ticket.updated_at > self.clock() - 3600))
                .order_by(Ticket.id)
            ).all()
            return tuple((r[0], r[1], r[2], r[3]) for r in rows)
