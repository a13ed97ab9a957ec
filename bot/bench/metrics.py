"""Evaluation metrics for intent classification, out-of-scope detection and entity extraction.

Pure Python over plain labels and spans (no Rasa, no numpy), so every figure in a report can be
checked by hand. Conventions:

* A prediction of `out_of_scope` or `nlu_fallback` (Rasa's `FallbackClassifier`) means
  "out of scope"; both are compared as `out_of_scope`.
* Macro-F1 averages over the intents present in the gold labels, so a label only ever
  predicted (e.g. `nlu_fallback` on a closed set) costs recall of the gold intents instead of
  adding a zero-F1 pseudo-class.
* Entities match when start, end and type are all equal (exact span + type); scores are micro
  averages over all spans. With no predictions precision is 0.0; with no gold spans recall is 0.0.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OUT_OF_SCOPE = "out_of_scope"
FALLBACK = "nlu_fallback"
#: Predicted labels that count as "out of scope".
OOS_LABELS = frozenset({OUT_OF_SCOPE, FALLBACK})

#: An entity for exact matching: (start, end, type).
EntityKey = tuple[int, int, str]


def is_out_of_scope(label: str) -> bool:
    """Whether a (gold or predicted) intent label means out of scope."""
    return label in OOS_LABELS


def canonical_intent(label: str) -> str:
    """`out_of_scope` for any out-of-scope label, else the label itself."""
    return OUT_OF_SCOPE if is_out_of_scope(label) else label


def _check_lengths(gold: Sequence[object], pred: Sequence[object]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 with the counts they come from."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def support(self) -> int:
        """Number of gold items."""
        return self.tp + self.fn

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "predicted": self.tp + self.fp,
        }


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Share of predictions equal to the gold intent (out-of-scope labels compared as one).

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    _check_lengths(gold, pred)
    if not gold:
        raise ValueError("accuracy of an empty test set")
    hits = sum(canonical_intent(g) == canonical_intent(p) for g, p in zip(gold, pred, strict=True))
    return hits / len(gold)


def per_intent_prf(gold: Sequence[str], pred: Sequence[str]) -> dict[str, PRF]:
    """Precision/recall/F1 of each gold intent (out-of-scope labels compared as one)."""
    _check_lengths(gold, pred)
    gold_c = [canonical_intent(g) for g in gold]
    pred_c = [canonical_intent(p) for p in pred]
    tp: Counter[str] = Counter(g for g, p in zip(gold_c, pred_c, strict=True) if g == p)
    gold_n = Counter(gold_c)
    pred_n = Counter(pred_c)
    return {
        label: PRF(tp=tp[label], fp=pred_n[label] - tp[label], fn=gold_n[label] - tp[label])
        for label in sorted(gold_n)
    }


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Unweighted mean F1 over the intents present in `gold`."""
    scores = per_intent_prf(gold, pred)
    if not scores:
        raise ValueError("macro-F1 of an empty test set")
    return sum(s.f1 for s in scores.values()) / len(scores)


def in_scope_accuracy(gold: Sequence[str], pred: Sequence[str]) -> float | None:
    """Accuracy on the in-scope gold items (an out-of-scope prediction is wrong there).

    Returns None when no gold item is in scope.
    """
    _check_lengths(gold, pred)
    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if not is_out_of_scope(g)]
    if not pairs:
        return None
    return sum(g == p for g, p in pairs) / len(pairs)


def oos_recall(gold: Sequence[str], pred: Sequence[str]) -> float | None:
    """Share of out-of-scope gold items predicted as out of scope (None: no such items)."""
    _check_lengths(gold, pred)
    oos = [p for g, p in zip(gold, pred, strict=True) if is_out_of_scope(g)]
    if not oos:
        return None
    return sum(is_out_of_scope(p) for p in oos) / len(oos)


def oos_precision(gold: Sequence[str], pred: Sequence[str]) -> float | None:
    """Share of out-of-scope predictions that are out of scope (None: none predicted)."""
    _check_lengths(gold, pred)
    flagged = [g for g, p in zip(gold, pred, strict=True) if is_out_of_scope(p)]
    if not flagged:
        return None
    return sum(is_out_of_scope(g) for g in flagged) / len(flagged)


def top_in_scope_confidence(ranking: Iterable[tuple[str, float]]) -> float:
    """Highest confidence among in-scope intents of a ranking (0.0 when there is none)."""
    return max((conf for name, conf in ranking if not is_out_of_scope(name)), default=0.0)


def top_in_scope_intent(ranking: Iterable[tuple[str, float]]) -> str | None:
    """The in-scope intent with the highest confidence (None when the ranking has none)."""
    best: tuple[str, float] | None = None
    for name, conf in ranking:
        if not is_out_of_scope(name) and (best is None or conf > best[1]):
            best = (name, conf)
    return best[0] if best else None


def _average_ranks(scores: Sequence[float]) -> list[float]:
    """1-based ranks of `scores` in ascending order; ties get the mean of their ranks."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        i = j + 1
    return ranks


def auroc(positives: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count ½.

    Returns None when there are no positives or no negatives.
    """
    _check_lengths(positives, scores)
    n_pos = sum(1 for p in positives if p)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    rank_sum = sum(r for r, p in zip(ranks, positives, strict=True) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def roc_curve(
    positives: Sequence[bool], scores: Sequence[float]
) -> tuple[list[float], list[float]]:
    """False- and true-positive rates for every distinct threshold, from (0, 0) to (1, 1).

    Raises:
        ValueError: no positives or no negatives.
    """
    _check_lengths(positives, scores)
    n_pos = sum(1 for p in positives if p)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both positives and negatives")
    pairs = sorted(zip(scores, positives, strict=True), key=lambda sp: -sp[0])
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    for i, (score, positive) in enumerate(pairs):
        if positive:
            tp += 1
        else:
            fp += 1
        if i + 1 == len(pairs) or pairs[i + 1][0] != score:
            fpr.append(fp / n_neg)
            tpr.append(tp / n_pos)
    return fpr, tpr


def entity_prf(gold: Sequence[Iterable[EntityKey]], pred: Sequence[Iterable[EntityKey]]) -> PRF:
    """Micro precision/recall/F1 of exact (start, end, type) matches over all messages.

    `gold[i]` and `pred[i]` are the spans of message i; duplicates within a message count once.
    """
    _check_lengths(gold, pred)
    tp = fp = fn = 0
    for gold_spans, pred_spans in zip(gold, pred, strict=True):
        g, p = set(gold_spans), set(pred_spans)
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    return PRF(tp=tp, fp=fp, fn=fn)


def entity_token_prf(
    texts: Sequence[str],
    gold: Sequence[Iterable[EntityKey]],
    pred: Sequence[Iterable[EntityKey]],
) -> PRF:
    """Micro precision/recall/F1 over word tokens, the way `rasa test nlu` scores entities.

    Each whitespace-separated word of `texts[i]` takes the type of the first span (by start)
    that overlaps it, or none. A word with a gold type counts as a true positive when the
    prediction gives it the same type, else as a false negative; a word with a predicted type
    that differs from its gold type (none included) counts as a false positive. A partly right
    span ("friday" for the gold "next friday") earns credit for its right words, which
    exact-span matching (`entity_prf`) does not give; published entity figures of DIET and
    of `rasa test` are of this kind.
    """
    _check_lengths(texts, gold)
    _check_lengths(gold, pred)
    tp = fp = fn = 0
    for text, gold_spans, pred_spans in zip(texts, gold, pred, strict=True):
        ordered_gold, ordered_pred = sorted(set(gold_spans)), sorted(set(pred_spans))
        for word in re.finditer(r"\S+", text):
            g = _token_type(word.start(), word.end(), ordered_gold)
            p = _token_type(word.start(), word.end(), ordered_pred)
            if g is not None and p == g:
                tp += 1
                continue
            if g is not None:
                fn += 1
            if p is not None:
                fp += 1
    return PRF(tp=tp, fp=fp, fn=fn)


def _token_type(start: int, end: int, spans: Sequence[EntityKey]) -> str | None:
    for span_start, span_end, entity_type in spans:
        if span_start < end and start < span_end:
            return entity_type
    return None


def entity_prf_by_type(
    gold: Sequence[Iterable[EntityKey]], pred: Sequence[Iterable[EntityKey]]
) -> dict[str, PRF]:
    """`entity_prf` for each entity type that occurs in the gold or the predicted spans."""
    _check_lengths(gold, pred)
    gold_sets = [set(g) for g in gold]
    pred_sets = [set(p) for p in pred]
    types = sorted({t for spans in gold_sets + pred_sets for (_, _, t) in spans})
    return {
        entity_type: entity_prf(
            [{k for k in g if k[2] == entity_type} for g in gold_sets],
            [{k for k in p if k[2] == entity_type} for p in pred_sets],
        )
        for entity_type in types
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation (numpy's default method).

    Raises:
        ValueError: `values` is empty or q is outside 0–100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0–100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def most_confused(
    gold: Sequence[str], pred: Sequence[str], k: int = 10
) -> list[tuple[str, str, int]]:
    """The k most frequent (gold, predicted, count) errors, most frequent first."""
    _check_lengths(gold, pred)
    errors = Counter(
        (canonical_intent(g), canonical_intent(p))
        for g, p in zip(gold, pred, strict=True)
        if canonical_intent(g) != canonical_intent(p)
    )
    return [(g, p, n) for (g, p), n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def most_confused_labels(gold: Sequence[str], pred: Sequence[str], max_labels: int) -> list[str]:
    """Up to `max_labels` intents most involved in errors (as gold or as prediction), sorted."""
    involvement: Counter[str] = Counter()
    for g, p, n in most_confused(gold, pred, k=len(gold)):
        involvement[g] += n
        involvement[p] += n
    chosen = [label for label, _ in sorted(involvement.items(), key=lambda kv: (-kv[1], kv[0]))]
    return sorted(chosen[:max_labels])


def confusion_matrix(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]
) -> list[list[int]]:
    """Counts[i][j] of gold `labels[i]` predicted as `labels[j]` (other labels are left out)."""
    _check_lengths(gold, pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred, strict=True):
        gi, pi = index.get(canonical_intent(g)), index.get(canonical_intent(p))
        if gi is not None and pi is not None:
            matrix[gi][pi] += 1
    return matrix
