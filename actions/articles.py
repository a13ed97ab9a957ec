"""Seed articles of the knowledge base, read from `data/knowledge_base/*.yml`.

Interim store used until the SQLAlchemy knowledge base lands: articles are looked up by the
intent they answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from actions.errors import KnowledgeBaseError

DEFAULT_KB_DIR = Path(__file__).resolve().parent.parent / "data" / "knowledge_base"


@dataclass(frozen=True)
class Article:
    """One knowledge-base article."""

    id: str
    title: str
    answer: str
    intent: str | None = None
    questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    language: str = "en"


def kb_dir() -> Path:
    """Folder of the seed YAML files (`FUSIONDESK_KB_DIR` overrides)."""
    return Path(os.environ.get("FUSIONDESK_KB_DIR", DEFAULT_KB_DIR))


def load_articles(folder: Path) -> list[Article]:
    """Read every `*.yml` file in `folder`.

    Raises:
        KnowledgeBaseError: a file is not valid YAML or an article lacks id/title/answer.
    """
    articles: list[Article] = []
    for path in sorted(folder.glob("*.yml")):
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise KnowledgeBaseError(f"{path}: not valid YAML: {e}") from e
        for number, raw in enumerate(content.get("articles", []), start=1):
            missing = [key for key in ("id", "title", "answer") if not raw.get(key)]
            if missing:
                raise KnowledgeBaseError(f"{path}: article {number} lacks {', '.join(missing)}")
            articles.append(
                Article(
                    id=str(raw["id"]),
                    title=str(raw["title"]),
                    answer=str(raw["answer"]).strip(),
                    intent=raw.get("intent"),
                    questions=tuple(raw.get("questions") or ()),
                    tags=tuple(raw.get("tags") or ()),
                    language=str(raw.get("language", "en")),
                )
            )
    return articles


@lru_cache(maxsize=4)
def _articles_by_intent(folder: str, mtime: float) -> dict[str, Article]:
    return {a.intent: a for a in load_articles(Path(folder)) if a.intent}


def article_for_intent(intent: str) -> Article | None:
    """The article answering `intent`, re-read when a seed file changes."""
    folder = kb_dir()
    mtime = max((p.stat().st_mtime for p in folder.glob("*.yml")), default=0.0)
    return _articles_by_intent(str(folder), mtime).get(intent)
