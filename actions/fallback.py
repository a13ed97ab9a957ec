"""What the bot does when nothing it knows fits: ask to rephrase once, then hand over.

`nothing_fits` is shared by `action_out_of_scope` and `action_answer_question` (when the
knowledge base has no confident or close article). The slot `fallback_count` remembers the
first miss; it is reset by any answer and when an operator hands the conversation back.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import handoff_events
from bot.handoff.triggers import HandoffReason

FALLBACK_SLOT = "fallback_count"
#: Rephrase prompts before the conversation is handed to a person.
REPHRASES_BEFORE_HANDOFF = 1


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
) -> list[dict[str, Any]]:
    """Ask the customer to rephrase; if they already did, hand over to a person."""
    count = fallback_count(tracker)
    if count < REPHRASES_BEFORE_HANDOFF:
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
