"""Reading and writing articles and their vectors within one SQLAlchemy session.

Only bound parameters (ORM and Core expressions); every write also bumps `kb_state.revision`
in the same transaction, which is how other processes notice a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from actions.kb.article import Article
from actions.kb.models import ArticleRow, QuestionRow, StateRow, VectorRow

#: The revision counter of `kb_state`: changes whenever the knowledge base does.
Version = int


def utcnow() -> datetime:
    """Current UTC time as the naive datetime the tables store."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class ImportSummary:
    """What an import changed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed"
        )


@dataclass(frozen=True)
class StoredVectors:
    """An article's vectors as stored for one encoder."""

    content_hash: str
    matrix: np.ndarray


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    """Split long id lists: databases cap the number of bound parameters per statement."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _to_article(row: ArticleRow, questions: Sequence[str]) -> Article:
    return Article(
        id=row.id,
        intent=row.intent,
        title=row.title,
        answer=row.answer,
        questions=tuple(questions),
        tags=tuple(row.tags or ()),
        language=row.language,
        updated_at=row.updated_at,
    )


class ArticleRepository:
    """Articles, question variants, vectors and the revision counter."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- reading -------------------------------------------------------------------------
    def version(self) -> Version:
        """The revision counter (a primary-key read): every write through this repository
        bumps it in the same transaction."""
        revision = self.session.execute(
            select(StateRow.revision).where(StateRow.id == 1)
        ).scalar_one_or_none()
        return int(revision or 0)

    def count(self) -> int:
        return int(self.session.execute(select(func.count(ArticleRow.id))).scalar_one())

    def get(self, article_id: str) -> Article | None:
        row = self.session.get(ArticleRow, article_id)
        if row is None:
            return None
        return _to_article(row, [q.text for q in row.questions])

    def by_intent(self, intent: str) -> Article | None:
        """The article answering `intent` (the first by id if several claim it)."""
        row = self.session.execute(
            select(ArticleRow).where(ArticleRow.intent == intent).order_by(ArticleRow.id).limit(1)
        ).scalar_one_or_none()
        if row is None:
            return None
        return _to_article(row, [q.text for q in row.questions])

    def all(self) -> list[Article]:
        """Every article, ordered by id (two plain column queries, whatever the size)."""
        questions: dict[str, list[str]] = {}
        for article_id, text in self.session.execute(
            select(QuestionRow.article_id, QuestionRow.text).order_by(
                QuestionRow.article_id, QuestionRow.position
            )
        ):
            questions.setdefault(article_id, []).append(text)
        rows = self.session.execute(
            select(
                ArticleRow.id, ArticleRow.intent, ArticleRow.title, ArticleRow.answer,
                ArticleRow.tags, ArticleRow.language, ArticleRow.updated_at,
            ).order_by(ArticleRow.id)
        )  # fmt: skip
        return [
            Article(
                id=row.id,
                intent=row.intent,
                title=row.title,
                answer=row.answer,
                questions=tuple(questions.get(row.id, ())),
                tags=tuple(row.tags or ()),
                language=row.language,
                updated_at=row.updated_at,
            )
            for row in rows
        ]

    def vector_hashes(self, encoder: str) -> dict[str, str]:
        """Article id → content hash its stored vectors for `encoder` were computed from."""
        return {
            article_id: content_hash
            for article_id, content_hash in self.session.execute(
                select(VectorRow.article_id, VectorRow.content_hash).where(
                    VectorRow.encoder == encoder
                )
            )
        }

    def vectors(self, encoder: str) -> dict[str, StoredVectors]:
        """Stored vectors of every article for `encoder`."""
        out: dict[str, StoredVectors] = {}
        for article_id, dim, rows, content_hash, data in self.session.execute(
            select(
                VectorRow.article_id, VectorRow.dim, VectorRow.rows, VectorRow.content_hash,
                VectorRow.data,
            ).where(VectorRow.encoder == encoder)
        ):  # fmt: skip
            matrix = np.frombuffer(data, dtype="<f4")
            if matrix.size != rows * dim:
                continue  # damaged row: recomputed by the caller
            out[article_id] = StoredVectors(content_hash, matrix.reshape(rows, dim))
        return out

    # -- writing -------------------------------------------------------------------------
    def bump_revision(self) -> None:
        now = utcnow()
        updated = self.session.execute(
            update(StateRow)
            .where(StateRow.id == 1)
            .values(revision=StateRow.revision + 1, updated_at=now)
        )
        if updated.rowcount == 0:
            self.session.add(StateRow(id=1, revision=1, updated_at=now))
        self.session.flush()

    def save(self, articles: Iterable[Article], replace_all: bool = False) -> ImportSummary:
        """Insert or update `articles` (by id); with `replace_all`, delete the others."""
        now = utcnow()
        existing = {
            article_id: content_hash
            for article_id, content_hash in self.session.execute(
                select(ArticleRow.id, ArticleRow.content_hash)
            )
        }
        added = updated = unchanged = 0
        seen: set[str] = set()
        for article in articles:
            seen.add(article.id)
            digest = article.content_hash()
            if existing.get(article.id) == digest:
                unchanged += 1
                continue
            row = self.session.get(ArticleRow, article.id)
            if row is None:
                row = ArticleRow(id=article.id, created_at=now)
                self.session.add(row)
                added += 1
            else:
                updated += 1
            row.intent = article.intent
            row.title = article.title
            row.answer = article.answer
            row.tags = list(article.tags)
            row.language = article.language
            row.content_hash = digest
            row.updated_at = now
            row.questions = [
                QuestionRow(position=i, text=text) for i, text in enumerate(article.questions)
            ]
        removed = 0
        if replace_all:
            stale = [article_id for article_id in existing if article_id not in seen]
            removed = self.delete_many(stale)
        if added or updated or removed:
            self.bump_revision()
        return ImportSummary(added, updated, unchanged, removed)

    def delete_many(self, article_ids: Sequence[str]) -> int:
        """Delete articles (with their questions and vectors); returns how many existed."""
        if not article_ids:
            return 0
        removed = 0
        for ids in _chunks(list(article_ids)):
            self.session.execute(delete(VectorRow).where(VectorRow.article_id.in_(ids)))
            self.session.execute(delete(QuestionRow).where(QuestionRow.article_id.in_(ids)))
            result = self.session.execute(delete(ArticleRow).where(ArticleRow.id.in_(ids)))
            removed += int(result.rowcount or 0)
        self.bump_revision()
        return removed

    def save_vectors(self, encoder: str, items: dict[str, tuple[str, np.ndarray]]) -> None:
        """Store vectors: article id → (content hash they were computed from, matrix)."""
        if not items:
            return
        for ids in _chunks(list(items)):
            self.session.execute(
                delete(VectorRow).where(VectorRow.encoder == encoder, VectorRow.article_id.in_(ids))
            )
        for article_id, (content_hash, matrix) in items.items():
            matrix = np.ascontiguousarray(matrix, dtype="<f4")
            self.session.add(
                VectorRow(
                    article_id=article_id,
                    encoder=encoder,
                    dim=int(matrix.shape[1]),
                    rows=int(matrix.shape[0]),
                    content_hash=content_hash,
                    data=matrix.tobytes(),
                )
            )
        self.session.flush()
