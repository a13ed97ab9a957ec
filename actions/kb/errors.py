"""Errors of the knowledge base (all are `actions.errors.KnowledgeBaseError`)."""

from __future__ import annotations

from actions.errors import KnowledgeBaseError

__all__ = [
    "ArticleFormatError",
    "ArticleNotFoundError",
    "DatabaseUnavailableError",
    "EncoderUnavailableError",
    "KnowledgeBaseError",
]


class ArticleFormatError(KnowledgeBaseError):
    """An article or an import file is malformed; nothing was imported.

    Attributes:
        source: file (or other source) the article came from.
        line: 1-based line of the offending article or value, when known.
    """

    def __init__(self, message: str, source: str = "", line: int | None = None) -> None:
        self.source = source
        self.line = line
        where = source
        if line is not None:
            where = f"{source}:{line}" if source else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)


class ArticleNotFoundError(KnowledgeBaseError):
    """No article has the requested id."""


class DatabaseUnavailableError(KnowledgeBaseError):
    """The database cannot be reached or answered with an error."""


class EncoderUnavailableError(KnowledgeBaseError):
    """The sentence encoder for dense retrieval could not be loaded."""
