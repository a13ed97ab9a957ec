"""SQLAlchemy (1.4) tables of the knowledge base.

All tables carry the `kb_` prefix: the database is shared with Rasa's tracker store (`events`)
and the handoff tables, and the migration history lives in `kb_alembic_version` so another
component's alembic history cannot collide with ours. The schema is created and upgraded only
by the migrations in `actions/kb/migrations` (never `create_all`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import declarative_base, relationship

Base: Any = declarative_base()


class ArticleRow(Base):
    """One article (see `actions.kb.article.Article`)."""

    __tablename__ = "kb_articles"

    id = Column(String(128), primary_key=True)
    intent = Column(String(128), nullable=True, index=True)
    title = Column(String(300), nullable=False)
    answer = Column(Text, nullable=False)
    tags = Column(JSON, nullable=False, default=list)
    language = Column(String(16), nullable=False, default="en")
    #: sha256 of the visible content: re-importing an unchanged article is a no-op.
    content_hash = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False)
    updated_at = Column(DateTime, nullable=False, index=True)

    questions = relationship(
        "QuestionRow",
        order_by="QuestionRow.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class QuestionRow(Base):
    """One question variant of an article, in the author's order."""

    __tablename__ = "kb_questions"

    id = Column(Integer, primary_key=True, autoincrement=True)
    article_id = Column(
        String(128), ForeignKey("kb_articles.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position = Column(Integer, nullable=False)
    text = Column(Text, nullable=False)


class VectorRow(Base):
    """An article's sentence vectors for one encoder: float32 rows, little-endian bytes.

    Rows follow `actions.kb.ranking.article_texts`: title, question variants, answer view.
    """

    __tablename__ = "kb_vectors"

    article_id = Column(
        String(128), ForeignKey("kb_articles.id", ondelete="CASCADE"), primary_key=True
    )
    encoder = Column(String(200), primary_key=True)
    dim = Column(Integer, nullable=False)
    rows = Column(Integer, nullable=False)
    #: content_hash of the article the vectors were computed from (stale when it differs).
    content_hash = Column(String(64), nullable=False)
    data = Column(LargeBinary, nullable=False)


class StateRow(Base):
    """A single row whose revision every write bumps: the cheap "did the KB change?" check."""

    __tablename__ = "kb_state"

    id = Column(Integer, primary_key=True)
    revision = Column(Integer, nullable=False, default=0)
    updated_at = Column(DateTime, nullable=False)
