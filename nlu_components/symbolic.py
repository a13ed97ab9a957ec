"""The symbolic view T(x): a sparse, tf-idf weighted bag of syntax cues, words and word pieces.

Traditional semantic analysis, kept explicit so that every feature has a readable name:

* ``syntax:`` the dependency-parse cues of `syntax.syntax_cues` (root predicate, its objects,
  negation, modality, question form, dependency paths, POS patterns);
* ``word:`` lower-cased word unigrams and bigrams of the message;
* ``char:`` character n-grams inside each word (robust to typos and inflection).

Each group is tf-idf weighted (sublinear term frequency), L2-normalised on its own and scaled
by its group weight, so no group dominates by size. `SymbolicVocabulary` is fitted on the
training data and persisted as JSON (no pickle). Pure module: no Rasa, no torch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

GROUPS = ("syntax", "word", "char")
#: Words longer than this are cut before character n-grams (binary junk, URLs).
MAX_WORD_CHARS = 40
#: Words per message that feed the symbolic view (a 20,000-character message stays cheap).
MAX_WORDS = 128


def message_words(tokens: Sequence[str]) -> list[str]:
    """The words of a message: token texts with at least one letter or digit."""
    return [t for t in tokens if any(ch.isalnum() for ch in t)]


def symbolic_terms(
    cues: Sequence[str], words: Sequence[str], char_ngrams: tuple[int, int] = (2, 5)
) -> dict[str, list[str]]:
    """The raw terms of one message per group (before the vocabulary filters them)."""
    lowered = [w.lower()[:MAX_WORD_CHARS] for w in words[:MAX_WORDS] if w.strip()]
    word_terms = list(lowered) + [f"{a} {b}" for a, b in zip(lowered, lowered[1:])]
    low, high = char_ngrams
    char_terms: list[str] = []
    for word in lowered:
        padded = f" {word} "
        for n in range(low, high + 1):
            if n > len(padded):
                break
            char_terms += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return {"syntax": list(cues), "word": word_terms, "char": char_terms}


@dataclass
class SymbolicVocabulary:
    """Term → column index and inverse document frequency, per group."""

    group_weights: dict[str, float] = field(
        default_factory=lambda: {"syntax": 0.5, "word": 0.5, "char": 0.5}
    )
    min_count: dict[str, int] = field(default_factory=lambda: {"syntax": 2, "word": 1, "char": 2})
    char_ngrams: tuple[int, int] = (2, 5)
    terms: dict[str, int] = field(default_factory=dict)
    idf: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.char_ngrams = (int(self.char_ngrams[0]), int(self.char_ngrams[1]))
        self._names: list[str] | None = None
        #: (the `terms` it was built from, term → column per group), see `_by_group`
        self._lookup: tuple[dict[str, int], dict[str, dict[str, int]]] | None = None

    @property
    def size(self) -> int:
        return len(self.terms)

    def name(self, column: int) -> str:
        if self._names is None:
            names = [""] * len(self.terms)
            for term, index in self.terms.items():
                names[index] = term
            self._names = names
        return self._names[column]

    def fit(self, documents: Iterable[Mapping[str, Sequence[str]]]) -> SymbolicVocabulary:
        """Choose the terms (seen in at least `min_count` messages) and their idf."""
        frequency: Counter[str] = Counter()
        n_docs = 0
        for doc in documents:
            n_docs += 1
            for group in GROUPS:
                if self.group_weights.get(group, 0.0) > 0:
                    frequency.update({f"{group}:{t}" for t in doc.get(group, ())})
        kept = sorted(
            term
            for term, count in frequency.items()
            if count >= self.min_count.get(term.split(":", 1)[0], 1)
        )
        self.terms = {term: i for i, term in enumerate(kept)}
        # smooth idf, as scikit-learn's TfidfVectorizer: ln((1 + n) / (1 + df)) + 1
        self.idf = [math.log((1 + n_docs) / (1 + frequency[t])) + 1.0 for t in kept]
        self._names = None
        return self

    def _by_group(self) -> dict[str, dict[str, int]]:
        """Term → column per group (terms without their `group:` prefix), cached."""
        cached = self._lookup
        if cached is None or cached[0] is not self.terms:
            by_group: dict[str, dict[str, int]] = {group: {} for group in GROUPS}
            for term, column in self.terms.items():
                group, _, text = term.partition(":")
                by_group.setdefault(group, {})[text] = column
            cached = (self.terms, by_group)
            self._lookup = cached
        return cached[1]

    def transform(self, documents: Sequence[Mapping[str, Sequence[str]]]) -> sp.csr_matrix:
        """tf-idf rows (sublinear tf, each group L2-normalised and weighted), float32 CSR."""
        by_group = self._by_group()
        active = [
            (group, weight, by_group.get(group, {}))
            for group in GROUPS
            if (weight := self.group_weights.get(group, 0.0)) > 0
        ]
        idf = self.idf
        log = math.log
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for doc in documents:
            for group, weight, lookup in active:
                columns: list[int] = []
                values: list[float] = []
                for term, count in Counter(doc.get(group, ())).items():
                    column = lookup.get(term)
                    if column is not None:
                        columns.append(column)
                        values.append(
                            idf[column] if count == 1 else (1.0 + log(count)) * idf[column]
                        )
                if not columns:
                    continue
                scale = weight / math.sqrt(sum(v * v for v in values))
                indices += columns
                data += [v * scale for v in values]
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
            shape=(len(documents), self.size),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "group_weights": self.group_weights,
            "min_count": self.min_count,
            "char_ngrams": list(self.char_ngrams),
            "terms": sorted(self.terms, key=self.terms.__getitem__),
            "idf": self.idf,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SymbolicVocabulary:
        vocab = cls(
            group_weights=dict(data["group_weights"]),
            min_count=dict(data["min_count"]),
            char_ngrams=tuple(data["char_ngrams"]),  # type: ignore[arg-type]
        )
        vocab.terms = {term: i for i, term in enumerate(data["terms"])}
        vocab.idf = [float(v) for v in data["idf"]]
        if len(vocab.idf) != len(vocab.terms):
            raise ValueError("symbolic vocabulary: terms and idf differ in length")
        return vocab
