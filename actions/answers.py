"""`action_answer_question`: answer from the knowledge base, offer choices, or hand over.

* A FAQ intent (one of the 77 banking intents): the article whose `intent` matches, read from
  the database.
* A button press `/kb_article{"article_id": "..."}`: that article.
* Anything else (`out_of_scope`, `nlu_fallback`, or an intent without article): hybrid
  retrieval over the customer's words. Confident → the best article; several close → the top
  three as buttons; nothing fits → rephrase once, then hand over (`actions.fallback`).
* Database or encoder down: an apology, the error in the log, and a person takes over.

The knowledge base work (SQL, encoding) runs in a worker thread so the action server's event
loop stays responsive.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.errors import KnowledgeBaseError
from actions.fallback import FALLBACK_SLOT, fallback_count, nothing_fits
from actions.handoff import handoff_events
from actions.kb.article import Article
from actions.kb.decision import MAX_CHOICES, Reply, choose_reply
from actions.kb.service import KnowledgeBase, get_knowledge_base
from bot.handoff.triggers import HandoffReason

logger = logging.getLogger(__name__)

#: Intent and entity of the choice buttons (domain.yml; rule kb_article → this action).
CHOICE_INTENT = "kb_article"
CHOICE_ENTITY = "article_id"
#: Intents that never name an article: always retrieve.
RETRIEVAL_INTENTS = frozenset({"out_of_scope", "nlu_fallback", ""})


def plan_reply(kb: KnowledgeBase, intent: str, text: str, article_id: str | None) -> Reply:
    """Decide the reply for one customer message (runs in a worker thread).

    Raises:
        KnowledgeBaseError: the database or the encoder is unavailable.
    """
    if intent == CHOICE_INTENT and article_id:
        article = kb.get(article_id)
        return Reply("answer", article, None) if article else Reply("none")
    if intent not in RETRIEVAL_INTENTS:
        article = kb.for_intent(intent)
        if article is not None:
            return Reply("answer", article, None)
    if intent == CHOICE_INTENT:
        return Reply("none")
    return choose_reply(kb.search(text, k=MAX_CHOICES), kb.config)


def answer_text(article: Article) -> str:
    """The answer as the customer reads it, naming its article."""
    return f"{article.answer}\n\n(from: {article.title})"


def choice_payload(article_id: str) -> str:
    """Button payload that Rasa's message parser turns into intent + entity (REST, socket.io)."""
    return f"/{CHOICE_INTENT}{json.dumps({CHOICE_ENTITY: article_id})}"


def _entity(tracker: Tracker, name: str) -> str | None:
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == name and entity.get("value"):
            return str(entity["value"])
    return None


class ActionAnswerQuestion(Action):
    """Answer the customer's question from the knowledge base."""

    def name(self) -> str:
        return "action_answer_question"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        message = tracker.latest_message or {}
        intent = str((message.get("intent") or {}).get("name") or "")
        text = str(message.get("text") or "")
        try:
            kb = get_knowledge_base()
            reply = await asyncio.to_thread(
                plan_reply, kb, intent, text, _entity(tracker, CHOICE_ENTITY)
            )
        except KnowledgeBaseError:
            logger.exception(
                "knowledge base unavailable for conversation %s; handing over", tracker.sender_id
            )
            dispatcher.utter_message(response="utter_kb_unavailable")
            return [SlotSet(FALLBACK_SLOT, 0.0), *handoff_events(HandoffReason.KB_NO_ANSWER)]

        if reply.kind == "answer" and reply.article is not None:
            article = reply.article
            dispatcher.utter_message(
                text=answer_text(article),
                json_message={
                    "kb_article": {
                        "id": article.id,
                        "title": article.title,
                        "confidence": None
                        if reply.confidence is None
                        else round(reply.confidence, 3),
                    }
                },
            )
            return [SlotSet(FALLBACK_SLOT, 0.0)] if fallback_count(tracker) else []
        if reply.kind == "choose":
            buttons = [
                {"title": hit.article.title, "payload": choice_payload(hit.article.id)}
                for hit in reply.choices
            ]
            buttons.append({"title": "Talk to a person", "payload": "/request_human"})
            dispatcher.utter_message(response="utter_kb_choose", buttons=buttons)
            return []
        return nothing_fits(dispatcher, tracker)
