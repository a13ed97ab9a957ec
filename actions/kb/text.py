"""Text normalisation for retrieval: query clean-up and the BM25 tokenizer (pure)."""

from __future__ import annotations

import re
from functools import lru_cache

#: Longest question text retrieval looks at; the rest is ignored (the encoder reads 128
#: word pieces anyway, and a 50,000-character paste must not cost more than a short one).
MAX_QUERY_CHARS = 1_000

_TOKEN_RE = re.compile(r"[a-z0-9]+")
_MARKUP_RE = re.compile(r"<[^>]{0,200}>")

#: Function words that carry no topic (kept small on purpose: "not", "no" stay out of it).
STOPWORDS: frozenset[str] = frozenset(
    """a an the and or of to in on for is are was were be been being it its this that these
    those i im my me mine we our us you your yours do does did doing how what why when where
    which who whom can could would should will shall may might must with at by from as if so
    there their they them he she his her am have has had having about into than then too very
    just any some also please hi hello thanks thank get got""".split()
)

_SUFFIXES = ("ing", "ed", "es", "s", "ly")


def clean_query(text: str) -> str:
    """The question as retrieval sees it: markup removed, whitespace collapsed, length capped."""
    text = _MARKUP_RE.sub(" ", text[: MAX_QUERY_CHARS * 4])
    return " ".join(text.split())[:MAX_QUERY_CHARS]


@lru_cache(maxsize=65_536)
def stem(token: str) -> str:
    """A light suffix stripper so "charged", "charges" and "charge" meet (BM25 recall only)."""
    for suffix in _SUFFIXES:
        if len(token) > len(suffix) + 2 and token.endswith(suffix):
            token = token[: -len(suffix)]
            break
    if len(token) > 4 and token.endswith("e"):
        token = token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text` (digits kept: "3d secure", "24 hours")."""
    return [stem(t) for t in _TOKEN_RE.findall(text.lower()) if t not in STOPWORDS]
