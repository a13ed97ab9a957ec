"""The article record and its validation (pure: no database, no YAML).

Every article that enters the knowledge base, from a YAML/JSONL file, the CLI or code, passes
`article_from_mapping`, so the database never holds an article the bot cannot show.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from actions.kb.errors import ArticleFormatError

#: Limits that keep one article displayable in a chat bubble and cheap to index.
MAX_ID_CHARS = 128
MAX_TITLE_CHARS = 300
MAX_ANSWER_CHARS = 20_000
MAX_QUESTION_CHARS = 1_000
MAX_QUESTIONS = 500
MAX_TAGS = 50

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_INTENT_RE = re.compile(r"^[A-Za-z0-9_]+$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_KNOWN_KEYS = frozenset({"id", "intent", "title", "tags", "language", "questions", "answer"})


@dataclass(frozen=True)
class Article:
    """One knowledge-base article: the answer to a family of questions."""

    id: str
    title: str
    answer: str
    intent: str | None = None
    questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    language: str = "en"
    #: When the article last changed in the database (UTC, naive); None before it is stored.
    updated_at: datetime | None = field(default=None, compare=False)

    def content_hash(self) -> str:
        """Hash of everything a customer or the index sees (not `updated_at`)."""
        payload = json.dumps(
            [
                self.id,
                self.intent,
                self.title,
                self.answer,
                self.questions,
                self.tags,
                self.language,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The article as the YAML/JSON export writes it (keys in a fixed order)."""
        data: dict[str, Any] = {"id": self.id}
        if self.intent:
            data["intent"] = self.intent
        data["title"] = self.title
        if self.tags:
            data["tags"] = list(self.tags)
        data["language"] = self.language
        if self.questions:
            data["questions"] = list(self.questions)
        data["answer"] = self.answer
        return data

    def with_updated_at(self, updated_at: datetime | None) -> Article:
        return replace(self, updated_at=updated_at)


def _text(raw: Any, key: str, limit: int, source: str, line: int | None) -> str:
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ArticleFormatError(f"`{key}` must be text, not {type(raw).__name__}", source, line)
    text = " ".join(str(raw).split()) if key != "answer" else str(raw).strip()
    if not text:
        raise ArticleFormatError(f"`{key}` is empty", source, line)
    if len(text) > limit:
        raise ArticleFormatError(f"`{key}` is longer than {limit} characters", source, line)
    if "\x00" in text:
        raise ArticleFormatError(f"`{key}` contains a NUL character", source, line)
    return text


def _text_list(
    raw: Any, key: str, limit: int, count: int, source: str, line: int | None
) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ArticleFormatError(f"`{key}` must be a list of texts", source, line)
    if len(raw) > count:
        raise ArticleFormatError(f"`{key}` has more than {count} entries", source, line)
    items: list[str] = []
    for item in raw:
        text = _text(item, key, limit, source, line)
        if text not in items:  # duplicates add nothing to retrieval
            items.append(text)
    return tuple(items)


def article_from_mapping(raw: Any, source: str = "", line: int | None = None) -> Article:
    """Validate one article given as a mapping (from YAML, JSON or code).

    Args:
        raw: mapping with `id`, `title`, `answer` and optional `intent`, `questions`, `tags`,
            `language`.
        source: where it came from, for error messages.
        line: 1-based line of the article in `source`.

    Raises:
        ArticleFormatError: a key is missing, unknown, of the wrong type, empty or too long.
    """
    if not isinstance(raw, Mapping):
        raise ArticleFormatError(
            f"an article must be a mapping with id, title and answer, not {type(raw).__name__}",
            source,
            line,
        )
    unknown = sorted(str(key) for key in raw if key not in _KNOWN_KEYS)
    if unknown:
        raise ArticleFormatError(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KNOWN_KEYS))}",
            source,
            line,
        )
    missing = [key for key in ("id", "title", "answer") if raw.get(key) in (None, "")]
    if missing:
        raise ArticleFormatError(f"article lacks {', '.join(missing)}", source, line)
    article_id = _text(raw["id"], "id", MAX_ID_CHARS, source, line)
    if not _ID_RE.match(article_id):
        raise ArticleFormatError(
            f"id {article_id!r} may only use letters, digits, '_', '.', '-'", source, line
        )
    intent = raw.get("intent")
    if intent is not None:
        intent = _text(intent, "intent", MAX_ID_CHARS, source, line)
        if not _INTENT_RE.match(intent):
            raise ArticleFormatError(
                f"intent {intent!r} may only use letters, digits and '_'", source, line
            )
    language = _text(raw.get("language", "en"), "language", 16, source, line)
    if not _LANGUAGE_RE.match(language):
        raise ArticleFormatError(
            f"language {language!r} is not a language code such as 'en' or 'pt-BR'", source, line
        )
    return Article(
        id=article_id,
        intent=intent,
        title=_text(raw["title"], "title", MAX_TITLE_CHARS, source, line),
        answer=_text(raw["answer"], "answer", MAX_ANSWER_CHARS, source, line),
        questions=_text_list(
            raw.get("questions"), "questions", MAX_QUESTION_CHARS, MAX_QUESTIONS, source, line
        ),
        tags=_text_list(raw.get("tags"), "tags", 64, MAX_TAGS, source, line),
        language=language,
    )
