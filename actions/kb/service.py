"""The knowledge base as the action server and the CLI use it.

`KnowledgeBase` ties the database (articles and stored vectors), the encoder and the
in-memory `KnowledgeIndex` together:

* on first use it migrates the schema (`alembic upgrade head`) and, when the article table is
  empty, imports the seed files (`data/knowledge_base/*.yml`, or `FUSIONDESK_KB_DIR`);
* every search first reads one cheap version row; when another process (the CLI, an editor)
  changed the articles, the index is rebuilt from the database — no restart needed;
* vectors are computed when articles are imported or edited and stored with them, so a
  restart only reads them back.

`get_knowledge_base()` returns the process-wide instance for `FUSIONDESK_DB_URL`; creating it
touches neither the database nor the encoder.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from actions.kb.article import Article
from actions.kb.db import make_engine, session_factory, session_scope, upgrade
from actions.kb.encoding import QueryEncoder, TextEncoder, encoder_key
from actions.kb.errors import (
    ArticleNotFoundError,
    DatabaseUnavailableError,
    EncoderUnavailableError,
    KnowledgeBaseError,
)
from actions.kb.models import StateRow
from actions.kb.ranking import KnowledgeIndex, Mode, RetrievalConfig, SearchHit, article_texts
from actions.kb.repository import ArticleRepository, ImportSummary, Version
from actions.kb.text import clean_query
from actions.kb.yaml_io import load_path

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_SEED_DIR = PROJECT_ROOT / "data" / "knowledge_base"


def seed_dir_from_env() -> Path:
    """Folder of the seed articles (`FUSIONDESK_KB_DIR` overrides the default)."""
    return Path(os.environ.get("FUSIONDESK_KB_DIR") or DEFAULT_SEED_DIR)


def query_threads_from_env() -> int:
    """Torch threads for encoding in the action server: `FUSIONDESK_KB_THREADS`, default 1.

    A second thread makes one question's encoding only ~10 % faster here (interleaved
    measurement, MiniLM on a 20-token question) for ~60 % more CPU time, so the default keeps
    the other core for the Rasa server; a machine with idle cores may raise it. A bad value is
    an error that names the variable.
    """
    raw = os.environ.get("FUSIONDESK_KB_THREADS", "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise EncoderUnavailableError(
            f"FUSIONDESK_KB_THREADS must be a whole number >= 1, not {raw!r}"
        )
    return value


def load_default_encoder() -> TextEncoder:
    """The NLU's sentence encoder (shared per process by `load_encoder`), running on
    `query_threads_from_env()` threads."""
    from nlu_components.encoder import load_encoder
    from nlu_components.errors import ComponentConfigError, ModelNotFoundError

    try:
        return load_encoder(num_threads=query_threads_from_env())
    except (ModelNotFoundError, ComponentConfigError, OSError) as e:
        raise EncoderUnavailableError(f"cannot load the sentence encoder: {e}") from e


_REVISION_SQL = f"SELECT revision FROM {StateRow.__table__.name} WHERE id = 1"


@dataclass(frozen=True)
class _Snapshot:
    version: Version
    index: KnowledgeIndex


class KnowledgeBase:
    """Articles in the database, searchable through an index kept in sync with it."""

    def __init__(
        self,
        db: str | Engine,
        encoder: TextEncoder | Callable[[], TextEncoder] | None = None,
        seed_dir: Path | None = None,
        config: RetrievalConfig | None = None,
        fast_queries: bool = True,
        warm_up: bool = False,
    ) -> None:
        """
        Args:
            db: SQLAlchemy URL or engine of the bot's database.
            encoder: the sentence encoder, or a factory called on first need (default: the
                NLU's MiniLM via `load_encoder`).
            seed_dir: folder imported when the article table is empty (None: no seeding).
            config: retrieval weights and decision thresholds.
            fast_queries: allow the lean single-query forward pass (see `encoding`).
            warm_up: once ready, build the index (encoding articles that lack vectors) in a
                background thread, so the first question does not wait for it.
        """
        self.engine = make_engine(db) if isinstance(db, str) else db
        self._sessions = session_factory(self.engine)
        self._encoder_source = encoder if encoder is not None else load_default_encoder
        self._encoder: TextEncoder | None = None
        self._query_encoder: QueryEncoder | None = None
        self._fast_queries = fast_queries
        self.seed_dir = seed_dir
        self.config = config or RetrievalConfig()
        self._ready = False
        self._warm_up = warm_up
        self._lock = threading.RLock()
        self._snapshot: _Snapshot | None = None

    # -- set-up --------------------------------------------------------------------------
    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    source = self._encoder_source
                    self._encoder = source if isinstance(source, TextEncoder) else source()
        return self._encoder

    @property
    def query_encoder(self) -> QueryEncoder:
        if self._query_encoder is None:
            with self._lock:
                if self._query_encoder is None:
                    self._query_encoder = QueryEncoder(self.encoder, allow_fast=self._fast_queries)
        return self._query_encoder

    @property
    def encoder_key(self) -> str:
        return encoder_key(self.encoder)

    def ensure_ready(self) -> None:
        """Create or upgrade the tables, then import the seed files into an empty KB."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            upgrade(self.engine)
            if self.seed_dir is not None and self.seed_dir.is_dir():
                with session_scope(self._sessions) as session:
                    empty = ArticleRepository(session).count() == 0
                if empty:
                    self._seed(self.seed_dir)
            self._ready = True
        if self._warm_up:
            threading.Thread(
                target=self._build_in_background, name="kb-warm-up", daemon=True
            ).start()

    def _build_in_background(self) -> None:
        try:
            self.index()
        except KnowledgeBaseError:
            logger.exception("knowledge base: building the search index failed")

    def _seed(self, folder: Path) -> None:
        articles = load_path(folder)
        try:
            # vectors are computed by the first index build, so answering by intent can start
            # at once (the seed has thousands of question variants)
            summary = self._import(articles, replace_all=False, encode=False)
        except DatabaseUnavailableError:
            # another process may have seeded at the same moment: fine if articles exist now
            with session_scope(self._sessions) as session:
                if ArticleRepository(session).count() == 0:
                    raise
            logger.info("knowledge base was seeded by another process")
            return
        logger.info("knowledge base seeded from %s: %s", folder, summary)

    # -- reading -------------------------------------------------------------------------
    def get(self, article_id: str) -> Article | None:
        self.ensure_ready()
        with session_scope(self._sessions) as session:
            return ArticleRepository(session).get(article_id)

    def for_intent(self, intent: str) -> Article | None:
        """The article that answers NLU intent `intent`, read from the database."""
        self.ensure_ready()
        with session_scope(self._sessions) as session:
            return ArticleRepository(session).by_intent(intent)

    def articles(self) -> list[Article]:
        self.ensure_ready()
        with session_scope(self._sessions) as session:
            return ArticleRepository(session).all()

    def index(self) -> KnowledgeIndex:
        """The in-memory index, rebuilt first if the database changed since it was built."""
        self.ensure_ready()
        version = self._revision()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version == version:
            return snapshot.index
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or snapshot.version != version:
                snapshot = self._rebuild()
                self._snapshot = snapshot
            return snapshot.index

    def _revision(self) -> Version:
        """The revision counter: one primary-key read on a pooled connection (every query)."""
        try:
            with self.engine.connect() as connection:
                # plain SQL: this runs before every search, and building and compiling the
                # ORM select cost more than the read itself (in-memory SQLite: 0.34 → 0.05 ms)
                value = connection.exec_driver_sql(_REVISION_SQL).scalar_one_or_none()
        except SQLAlchemyError as e:
            raise DatabaseUnavailableError(f"knowledge-base database error: {e}") from e
        return int(value or 0)

    def search(self, question: str, k: int = 3, mode: Mode = "hybrid") -> list[SearchHit]:
        """The `k` articles that best answer `question`, best first, with confidences."""
        query = clean_query(question)
        index = self.index()
        if not query or len(index) == 0:
            return []
        vector = None if mode == "bm25" else self.query_encoder.encode(query)
        return index.search(query, vector, k=k, mode=mode)

    # -- writing -------------------------------------------------------------------------
    def import_articles(
        self, articles: Sequence[Article], replace_all: bool = False
    ) -> ImportSummary:
        """Insert or update `articles` (and with `replace_all` delete all others) in one
        transaction, with their vectors; searches see the change on their next call."""
        self.ensure_ready()
        return self._import(articles, replace_all)

    def _import(
        self, articles: Sequence[Article], replace_all: bool, encode: bool = True
    ) -> ImportSummary:
        with self._lock:
            todo: list[Article] = []
            vectors: list[np.ndarray] = []
            if encode:
                key = self.encoder_key
                # read, encode without holding a write lock (other processes share SQLite), write
                with session_scope(self._sessions) as session:
                    have = ArticleRepository(session).vector_hashes(key)
                todo = [a for a in articles if have.get(a.id) != a.content_hash()]
                vectors = self._encode_articles(todo)
            with session_scope(self._sessions) as session:
                repository = ArticleRepository(session)
                summary = repository.save(articles, replace_all=replace_all)
                if todo:
                    repository.save_vectors(
                        key,
                        {a.id: (a.content_hash(), m) for a, m in zip(todo, vectors, strict=True)},
                    )
            return summary

    def import_path(self, path: str | Path, replace_all: bool = False) -> ImportSummary:
        """Validate a file or folder completely, then import it (nothing on error)."""
        return self.import_articles(load_path(path), replace_all=replace_all)

    def delete(self, article_ids: Sequence[str]) -> int:
        """Delete articles by id.

        Raises:
            ArticleNotFoundError: none of the ids exists.
        """
        self.ensure_ready()
        with session_scope(self._sessions) as session:
            removed = ArticleRepository(session).delete_many(article_ids)
        if removed == 0:
            raise ArticleNotFoundError(f"no article with id {', '.join(article_ids)}")
        return removed

    # -- internals -----------------------------------------------------------------------
    def _encode_articles(self, articles: Sequence[Article]) -> list[np.ndarray]:
        """Vectors of each article's texts (title, variants, answer view), one batch."""
        texts: list[str] = []
        bounds: list[tuple[int, int]] = []
        for article in articles:
            questions, answer_view = article_texts(article)
            start = len(texts)
            texts.extend(questions)
            texts.append(answer_view)
            bounds.append((start, len(texts)))
        if not texts:
            return []
        matrix = np.asarray(self.encoder.encode(texts), dtype=np.float32)
        return [matrix[start:end] for start, end in bounds]

    def _rebuild(self) -> _Snapshot:
        key = self.encoder_key
        with session_scope(self._sessions) as session:
            repository = ArticleRepository(session)
            version = repository.version()
            articles = repository.all()
            stored = repository.vectors(key)
        vectors: list[np.ndarray | None] = []
        missing: list[int] = []
        for i, article in enumerate(articles):
            item = stored.get(article.id)
            expected_rows = len(article_texts(article)[0]) + 1
            if (
                item is None
                or item.content_hash != article.content_hash()
                or len(item.matrix) != expected_rows
            ):
                vectors.append(None)
                missing.append(i)
            else:
                vectors.append(item.matrix)
        if missing:
            logger.info("knowledge base: encoding %d article(s) for %s", len(missing), key)
            fresh = self._encode_articles([articles[i] for i in missing])
            for i, matrix in zip(missing, fresh, strict=True):
                vectors[i] = matrix
            with session_scope(self._sessions) as session:
                ArticleRepository(session).save_vectors(
                    key,
                    {articles[i].id: (articles[i].content_hash(), vectors[i]) for i in missing},  # type: ignore[misc]
                )
        index = KnowledgeIndex.build(articles, [v for v in vectors if v is not None], self.config)
        logger.info("knowledge base index: %d articles (revision %s)", len(articles), version)
        return _Snapshot(version=version, index=index)


_instances: dict[str, KnowledgeBase] = {}
_instances_lock = threading.Lock()


def get_knowledge_base(db_url: str | None = None) -> KnowledgeBase:
    """The process-wide knowledge base for `db_url` (default: `FUSIONDESK_DB_URL`).

    Creating it does no database or encoder work; that happens on first use.
    """
    if db_url is None:
        from bot.settings import Settings

        db_url = Settings.from_env().db_url
    with _instances_lock:
        kb = _instances.get(db_url)
        if kb is None:
            kb = KnowledgeBase(db_url, seed_dir=seed_dir_from_env(), warm_up=True)
            _instances[db_url] = kb
        return kb
