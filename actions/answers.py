"""Answers from the knowledge base."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.articles import article_for_intent
from actions.errors import KnowledgeBaseError

logger = logging.getLogger(__name__)


class ActionAnswerQuestion(Action):
    """Answer the customer's question from the article of the predicted intent."""

    def name(self) -> str:
        return "action_answer_question"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        try:
            article = article_for_intent(intent)
        except KnowledgeBaseError:
            logger.exception("knowledge base unavailable")
            article = None
        if article is None:
            dispatcher.utter_message(response="utter_default")
            return []
        dispatcher.utter_message(
            text=article.answer,
            json_message={"article_id": article.id, "article_title": article.title},
        )
        return []
