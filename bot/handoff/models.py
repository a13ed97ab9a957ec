"""SQLAlchemy 1.4 tables of the handoff feature (all prefixed `handoff_`).

They live in the same database as Rasa's tracker store (`events`) and the knowledge base
(`kb_*`), on their own `MetaData`, so `create_all` here never touches another feature's tables.
Times are UNIX seconds (floats), like Rasa's event timestamps.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declarative_base

Base: Any = declarative_base(metadata=sa.MetaData())

_OPEN_STATES_SQL = "state IN ('waiting', 'with_agent')"


class Operator(Base):
    """A person who answers handed-off conversations in the console."""

    __tablename__ = "handoff_operators"

    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.String(64), nullable=False, unique=True)
    password_hash = sa.Column(sa.String(255), nullable=False)
    active = sa.Column(sa.Boolean, nullable=False, default=True)
    created_at = sa.Column(sa.Float, nullable=False)
    last_login_at = sa.Column(sa.Float)


class ConsoleSession(Base):
    """A signed-in console; the cookie carries a random token, the table only its SHA-256."""

    __tablename__ = "handoff_console_sessions"

    id = sa.Column(sa.Integer, primary_key=True)
    token_hash = sa.Column(sa.String(64), nullable=False, unique=True)
    csrf_token = sa.Column(sa.String(64), nullable=False)
    operator_id = sa.Column(
        sa.Integer, sa.ForeignKey("handoff_operators.id"), nullable=False, index=True
    )
    created_at = sa.Column(sa.Float, nullable=False)
    last_seen_at = sa.Column(sa.Float, nullable=False)
    expires_at = sa.Column(sa.Float, nullable=False, index=True)


class Ticket(Base):
    """One handed-off stretch of a conversation (`sender_id` is Rasa's conversation id)."""

    __tablename__ = "handoff_tickets"
    __table_args__ = (
        # At most one open ticket per conversation: opening is idempotent even under races.
        sa.Index(
            "ux_handoff_tickets_open_sender",
            "sender_id",
            unique=True,
            sqlite_where=sa.text(_OPEN_STATES_SQL),
            postgresql_where=sa.text(_OPEN_STATES_SQL),
        ),
    )

    id = sa.Column(sa.Integer, primary_key=True)
    sender_id = sa.Column(sa.String(255), nullable=False, index=True)
    channel = sa.Column(sa.String(64))
    state = sa.Column(sa.String(16), nullable=False, index=True)
    reason = sa.Column(sa.String(32), nullable=False)
    agent_id = sa.Column(sa.Integer, sa.ForeignKey("handoff_operators.id"), index=True)
    opened_at = sa.Column(sa.Float, nullable=False)
    claimed_at = sa.Column(sa.Float)
    closed_at = sa.Column(sa.Float)
    updated_at = sa.Column(sa.Float, nullable=False)
    #: Operator's note when resolving.
    resolution_note = sa.Column(sa.Text)
    #: Opened outside opening hours (the customer was told when someone answers).
    after_hours = sa.Column(sa.Boolean, nullable=False, default=False)
    #: Highest Rasa `events.id` copied into this ticket's messages (None: not yet backfilled).
    relay_cursor = sa.Column(sa.Integer)


class TicketMessage(Base):
    """A message in a ticket's transcript (card numbers already masked)."""

    __tablename__ = "handoff_messages"
    __table_args__ = (
        sa.UniqueConstraint("ticket_id", "rasa_event_id", name="uq_handoff_messages_event"),
        sa.UniqueConstraint("ticket_id", "client_msg_id", name="uq_handoff_messages_client"),
    )

    id = sa.Column(sa.Integer, primary_key=True)
    ticket_id = sa.Column(
        sa.Integer, sa.ForeignKey("handoff_tickets.id"), nullable=False, index=True
    )
    #: customer | bot | agent | system
    author = sa.Column(sa.String(16), nullable=False)
    text = sa.Column(sa.Text, nullable=False, default="")
    created_at = sa.Column(sa.Float, nullable=False)
    agent_id = sa.Column(sa.Integer, sa.ForeignKey("handoff_operators.id"))
    #: Rasa `events.id` the message was copied from (customer and bot messages).
    rasa_event_id = sa.Column(sa.Integer)
    #: Client-chosen id of an agent's reply: a replayed request is refused.
    client_msg_id = sa.Column(sa.String(64))
    #: JSON: the bot's view of a customer message (intent, confidence, entities, explanation, …).
    nlu = sa.Column(sa.Text)
    #: Agent replies: pending | delivered.
    delivery = sa.Column(sa.String(16))


class OutboxItem(Base):
    """Events to post to Rasa's HTTP API, delivered in order and retried until Rasa takes them."""

    __tablename__ = "handoff_outbox"

    id = sa.Column(sa.Integer, primary_key=True)
    ticket_id = sa.Column(
        sa.Integer, sa.ForeignKey("handoff_tickets.id"), nullable=False, index=True
    )
    sender_id = sa.Column(sa.String(255), nullable=False)
    #: JSON list of Rasa events.
    events = sa.Column(sa.Text, nullable=False)
    #: The agent reply this item delivers, if any.
    message_id = sa.Column(sa.Integer, sa.ForeignKey("handoff_messages.id"))
    created_at = sa.Column(sa.Float, nullable=False)
    delivered_at = sa.Column(sa.Float, index=True)
    attempts = sa.Column(sa.Integer, nullable=False, default=0)
    last_error = sa.Column(sa.Text)
