"""When to hand a conversation to a person, and what to tell the customer (pure).

The actions call these with plain data taken from the Rasa tracker, so every rule is tested
without Rasa.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from bot.handoff.config import HandoffConfig

#: Intents that count as "the bot did not understand".
FALLBACK_INTENTS: frozenset[str] = frozenset({"nlu_fallback", "out_of_scope"})
_STREAK_BREAKERS = frozenset({"session_started", "pause", "resume", "restart"})


class HandoffReason(str, Enum):
    """Why a ticket was opened (slot `handoff_reason`)."""

    REQUEST_HUMAN = "request_human"
    NLU_FALLBACK_TWICE = "nlu_fallback_twice"
    KB_NO_ANSWER = "kb_no_answer"
    FORM_ABANDONED = "form_abandoned"


def parse_reason(
    value: object, default: HandoffReason = HandoffReason.REQUEST_HUMAN
) -> HandoffReason:
    """The reason named by a slot value; `default` for empty or unknown values."""
    try:
        return HandoffReason(str(value)) if value else default
    except ValueError:
        return default


def consecutive_fallbacks(events: Iterable[Mapping[str, Any]]) -> int:
    """How many of the latest user messages in a row were NLU fallbacks or out_of_scope.

    Counts back from the newest `user` event and stops at the first understood one, at the
    start of the session, or where the conversation was paused or resumed (messages written to
    an operator do not count).
    """
    count = 0
    for event in reversed(list(events)):
        if event.get("event") in _STREAK_BREAKERS:
            break
        if event.get("event") != "user":
            continue
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent not in FALLBACK_INTENTS:
            break
        count += 1
    return count


def fallback_handoff_due(events: Iterable[Mapping[str, Any]], config: HandoffConfig) -> bool:
    """Whether the fallback trigger fires now (`fallbacks_in_a_row` reached; 0: never)."""
    return (
        config.fallbacks_in_a_row > 0 and consecutive_fallbacks(events) >= config.fallbacks_in_a_row
    )


def form_abandon_handoff_due(abandoned_so_far: float | None, config: HandoffConfig) -> bool:
    """Whether abandoning one more form hands off (`abandoned_so_far` excludes this one)."""
    return config.forms_abandoned > 0 and int(abandoned_so_far or 0) + 1 >= config.forms_abandoned


def trigger_enabled(reason: HandoffReason, config: HandoffConfig) -> bool:
    """Whether `config` lets `reason` open a ticket."""
    return {
        HandoffReason.REQUEST_HUMAN: config.request_human,
        HandoffReason.NLU_FALLBACK_TWICE: config.fallbacks_in_a_row > 0,
        HandoffReason.KB_NO_ANSWER: config.kb_no_answer,
        HandoffReason.FORM_ABANDONED: config.forms_abandoned > 0,
    }[reason]


def estimate_wait_minutes(
    position: int, agents_online: int, average_handling_minutes: float
) -> int:
    """Rough minutes until an operator picks up the ticket at `position` (1 = next in line).

    Each ticket in line up to and including this one takes about `average_handling_minutes`,
    shared between the operators signed in to the console (at least one is assumed). Never
    less than one minute.
    """
    workers = max(agents_online, 1)
    return max(1, math.ceil(max(position, 1) * average_handling_minutes / workers))
