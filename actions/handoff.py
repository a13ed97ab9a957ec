"""Hand the conversation to a person: open a ticket, tell the customer, pause the bot.

Triggers (configured in the `handoff:` section of `fusiondesk.yml`, see `bot.handoff.config`):

- the customer asks for a person: rule `request_human → action_handoff`;
- the NLU falls back / says out_of_scope N times in a row: an action handling those intents
  returns `fallback_handoff_events(tracker)` (a `handoff_reason` slot and a
  `FollowupAction("action_handoff")` once the streak reaches `fallbacks_in_a_row`);
- the knowledge base has no answer after one rephrase: `handoff_events(HandoffReason.KB_NO_ANSWER)`;
- forms abandoned twice: rules run `action_form_abandoned` after `action_deactivate_loop`; it
  counts in the `forms_abandoned` slot and hands off at `forms_abandoned` (README rule).

While a ticket is open the conversation stays paused; the web server's relay re-pauses it if Rasa
starts a new session (see `bot.handoff.relay`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import FusionDeskError
from bot.handoff.config import HandoffConfig
from bot.handoff.db import get_engine
from bot.handoff.hours import describe_moment
from bot.handoff.repository import HandoffRepository, TicketView
from bot.handoff.states import TicketState
from bot.handoff.triggers import (
    HandoffReason,
    estimate_wait_minutes,
    fallback_handoff_due,
    form_abandon_handoff_due,
    parse_reason,
    trigger_enabled,
)
from bot.settings import Settings

logger = logging.getLogger(__name__)

REASON_SLOT = "handoff_reason"
ACTIVE_SLOT = "handoff_active"
FORMS_ABANDONED_SLOT = "forms_abandoned"


def _repository() -> HandoffRepository:
    return HandoffRepository(get_engine(Settings.from_env().db_url))


def handoff_events(reason: HandoffReason) -> list[dict[str, Any]]:
    """Events that make Rasa run `action_handoff` next, for `reason`."""
    return [SlotSet(REASON_SLOT, reason.value), FollowupAction("action_handoff")]


def fallback_handoff_events(
    tracker: Tracker, config: HandoffConfig | None = None
) -> list[dict[str, Any]]:
    """For an action handling nlu_fallback/out_of_scope: hand off when this message completes
    a streak of `fallbacks_in_a_row` (events to return), else `[]` (rephrase instead)."""
    config = config or HandoffConfig.load()
    if fallback_handoff_due(tracker.events, config):
        return handoff_events(HandoffReason.NLU_FALLBACK_TWICE)
    return []


class ActionHandoff(Action):
    """Open a ticket (or find the open one), tell the customer what happens, pause the bot."""

    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        config = HandoffConfig.load()
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        default = (
            HandoffReason.NLU_FALLBACK_TWICE
            if intent in ("nlu_fallback", "out_of_scope")
            else HandoffReason.REQUEST_HUMAN
        )
        reason = parse_reason(tracker.get_slot(REASON_SLOT), default)
        if not trigger_enabled(reason, config):
            dispatcher.utter_message(response="utter_handoff_unavailable")
            return [SlotSet(REASON_SLOT, None)]
        now = datetime.now(timezone.utc)
        is_open = config.opening_hours.is_open(now)
        channel = tracker.get_latest_input_channel()
        try:
            ticket, created, position, online = await asyncio.to_thread(
                _open_ticket, tracker.sender_id, reason, channel, not is_open
            )
        except (SQLAlchemyError, FusionDeskError):
            logger.exception(
                "could not open a handoff ticket for conversation %s", tracker.sender_id
            )
            dispatcher.utter_message(response="utter_handoff_failed")
            return [SlotSet(REASON_SLOT, None)]
        if not created:
            dispatcher.utter_message(
                response="utter_handoff_with_agent"
                if ticket.state is TicketState.WITH_AGENT
                else "utter_handoff_already_waiting"
            )
        elif is_open:
            wait = estimate_wait_minutes(position, online, config.average_handling_minutes)
            dispatcher.utter_message(
                response="utter_handoff_queued",
                position=position,
                wait=f"{wait} minute{'s' if wait != 1 else ''}",
            )
        else:
            opening = config.opening_hours.next_opening(now)
            dispatcher.utter_message(
                response="utter_handoff_after_hours",
                opening=describe_moment(opening, now) if opening else "as soon as we can",
                hours=config.opening_hours.describe(),
            )
        return [
            SlotSet(ACTIVE_SLOT, True),
            SlotSet(REASON_SLOT, reason.value),
            ConversationPaused(),
        ]


def _open_ticket(
    sender_id: str, reason: HandoffReason, channel: str | None, after_hours: bool
) -> tuple[TicketView, bool, int, int]:
    repository = _repository()
    ticket, created = repository.open_ticket(
        sender_id, reason.value, channel, after_hours=after_hours
    )
    return ticket, created, repository.queue_position(ticket.id), repository.operators_online()


class ActionFormAbandoned(Action):
    """Count an abandoned form; hand off when `forms_abandoned` is reached."""

    def name(self) -> str:
        return "action_form_abandoned"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        config = HandoffConfig.load()
        so_far = tracker.get_slot(FORMS_ABANDONED_SLOT) or 0
        events: list[dict[str, Any]] = [SlotSet(FORMS_ABANDONED_SLOT, float(so_far) + 1)]
        if form_abandon_handoff_due(so_far, config):
            events += handoff_events(HandoffReason.FORM_ABANDONED)
        return events
