"""Answer, offer choices, or admit nothing fits — decided from ranked hits (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from actions.kb.article import Article
from actions.kb.ranking import RetrievalConfig, SearchHit

#: Most articles offered as buttons.
MAX_CHOICES = 3


@dataclass(frozen=True)
class Reply:
    """What to tell the customer."""

    kind: Literal["answer", "choose", "none"]
    article: Article | None = None
    #: Calibrated confidence of the answer (None when the article was chosen by intent/button).
    confidence: float | None = None
    choices: tuple[SearchHit, ...] = field(default_factory=tuple)


def choose_reply(hits: list[SearchHit], config: RetrievalConfig) -> Reply:
    """Answer when the best hit is confident, offer the close ones when it is plausible,
    else nothing (thresholds in `config`)."""
    if not hits:
        return Reply("none")
    best = hits[0]
    if best.confidence >= config.answer_threshold:
        return Reply("answer", best.article, best.confidence)
    if best.confidence >= config.choice_threshold:
        choices = [h for h in hits[:MAX_CHOICES] if h.confidence >= config.min_choice_confidence]
        return Reply("choose", choices=tuple(choices or hits[:1]))
    return Reply("none")
