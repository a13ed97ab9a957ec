"""What the bot does when nothing it knows fits: ask to rephrase, then hand over.

`nothing_fits` is shared by `action_out_of_scope` and `action_answer_question` (when the
knowledge base has no confident or close article). The slot `fallback_count` remembers the
misses; it is reset by any answer and when an operator hands the conversation back. The
handoff comes on the `fallbacks_in_a_row`-th miss in a row (`fusiondesk.yml`, `handoff:`
section; default 2 = rephrase once; 0 = never hand over, keep asking to rephrase).
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import handoff_events
from bot.errors import ConfigError
from bot.handoff.config import HandoffConfig
from bot.handoff.triggers import HandoffReason

logger = logging.getLogger(__name__)

FALLBACK_SLOT = "fallback_count"


def rephrases_before_handoff(config: HandoffConfig | None = None) -> int | None:
    """Rephrase prompts before the conversation is handed over (None: never hand over)."""
    if config is None:
        try:
            config = HandoffConfig.load()
        except ConfigError as e:  # a broken config file must not silence the bot
            logger.error("handoff config unreadable, using defaults: %s", e)
            config = HandoffConfig.from_mapping(None)
    if config.fallbacks_in_a_row <= 0:
        return None
    return config.fallbacks_in_a_row - 1


def fallback_count(tracker: Tracker) -> int:
    """How many times in a row the bot already asked to rephrase (slot `fallback_count`)."""
    value = tracker.get_slot(FALLBACK_SLOT)
    try:
        return max(0, int(float(value or 0)))
    except (TypeError, ValueError):
        return 0


def nothing_fits(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    reason: HandoffReason = HandoffReason.KB_NO_ANSWER,
    config: HandoffConfig | None = None,
) -> list[dict[str, Any]]:
    """Ask the customer to rephrase; after `fallbacks_in_a_row - 1` prompts, hand over."""
    count = fallback_count(tracker)
    limit = rephrases_before_handoff(config)
    if limit is None or count < limit:
        dispatcher.utter_message(response="utter_kb_rephrase")
        return [SlotSet(FALLBACK_SLOT, float(count + 1))]
    dispatcher.utter_message(response="utter_kb_no_answer")
    return [SlotSet(FALLBACK_SLOT, 0.0), *handoff_events(reason)]


class ActionOutOfScope(Action):
    """Nothing fits: rephrase once, then hand over (kept for stories that call it directly)."""

    def name(self) -> str:
        return "action_out_of_scope"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return nothing_fits(dispatcher, tracker, HandoffReason.NLU_FALLBACK_TWICE)
