"""Metric functions against hand-computed expectations."""

from __future__ import annotations

import random

import pytest

from bot.bench import metrics

OOS = "out_of_scope"


def test_accuracy_treats_fallback_and_out_of_scope_alike() -> None:
    gold = ["a", "b", OOS, "a"]
    pred = ["a", "a", "nlu_fallback", "b"]
    assert metrics.accuracy(gold, pred) == 0.5


def test_accuracy_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        metrics.accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])


def test_macro_f1_by_hand() -> None:
    # a: tp 1, fp 1, fn 1 -> 0.5; b: tp 2, fp 1, fn 0 -> 0.8; c: tp 0, fn 1 -> 0.0
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    assert metrics.macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    per = metrics.per_intent_prf(gold, pred)
    assert (per["b"].precision, per["b"].recall) == (pytest.approx(2 / 3), 1.0)
    assert per["c"].support == 1 and per["c"].f1 == 0.0


def test_macro_f1_averages_over_gold_intents_only() -> None:
    # "x" is only ever predicted: it lowers recall of "b" but is no class of its own
    assert metrics.macro_f1(["a", "b"], ["a", "x"]) == 0.5


def test_in_scope_accuracy_oos_recall_and_precision() -> None:
    gold = ["a", "b", OOS, OOS]
    pred = ["a", "nlu_fallback", OOS, "b"]
    assert metrics.in_scope_accuracy(gold, pred) == 0.5  # fallback on "b" is wrong
    assert metrics.oos_recall(gold, pred) == 0.5
    assert metrics.oos_precision(gold, pred) == 0.5  # one of two OOS predictions is right
    assert metrics.oos_recall(["a", OOS], ["a", "nlu_fallback"]) == 1.0


def test_oos_figures_are_none_without_such_items() -> None:
    assert metrics.oos_recall(["a", "b"], ["a", OOS]) is None
    assert metrics.in_scope_accuracy([OOS], [OOS]) is None
    assert metrics.oos_precision(["a"], ["a"]) is None


def test_top_in_scope_confidence_and_intent() -> None:
    ranking = [("nlu_fallback", 0.3), (OOS, 0.5), ("a", 0.2), ("b", 0.1)]
    assert metrics.top_in_scope_confidence(ranking) == 0.2
    assert metrics.top_in_scope_intent(ranking) == "a"
    assert metrics.top_in_scope_confidence([("nlu_fallback", 0.3)]) == 0.0
    assert metrics.top_in_scope_intent([]) is None


def test_auroc_by_hand() -> None:
    # positive/negative pairs: 0.9>0.8, 0.9>0.1, 0.4<0.8, 0.4>0.1 -> 3 of 4
    assert metrics.auroc([True, False, True, False], [0.9, 0.8, 0.4, 0.1]) == 0.75
    assert metrics.auroc([True, False], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert metrics.auroc([True, False], [0.1, 0.9]) == 0.0
    assert metrics.auroc([True, True], [0.1, 0.9]) is None


def test_roc_curve_by_hand_and_its_area_is_the_auroc() -> None:
    fpr, tpr = metrics.roc_curve([True, False, True, False], [0.9, 0.8, 0.4, 0.1])
    assert fpr == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr == [0.0, 0.5, 0.5, 1.0, 1.0]
    rng = random.Random(3)
    positives = [rng.random() < 0.3 for _ in range(200)]
    scores = [round(rng.random(), 1) for _ in range(200)]  # rounding makes many ties
    fpr, tpr = metrics.roc_curve(positives, scores)
    area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
    assert area == pytest.approx(metrics.auroc(positives, scores))
    with pytest.raises(ValueError, match="both positives and negatives"):
        metrics.roc_curve([True], [0.5])


def test_entity_prf_exact_span_and_type() -> None:
    gold = [{(0, 4, "person"), (5, 7, "amount")}, {(1, 3, "city")}]
    pred = [{(0, 4, "person"), (5, 8, "amount")}, set()]  # amount one char too long
    overall = metrics.entity_prf(gold, pred)
    assert (overall.tp, overall.fp, overall.fn) == (1, 1, 2)
    assert overall.precision == 0.5
    assert overall.recall == pytest.approx(1 / 3)
    assert overall.f1 == pytest.approx(0.4)
    wrong_type = metrics.entity_prf([{(0, 4, "person")}], [{(0, 4, "city")}])
    assert wrong_type.f1 == 0.0


def test_entity_prf_by_type() -> None:
    gold = [{(0, 4, "person"), (5, 7, "amount")}, {(1, 3, "city")}]
    pred = [{(0, 4, "person"), (5, 8, "amount")}, {(9, 12, "date")}]
    by_type = metrics.entity_prf_by_type(gold, pred)
    assert sorted(by_type) == ["amount", "city", "date", "person"]
    assert by_type["person"].f1 == 1.0
    assert (by_type["amount"].tp, by_type["amount"].fp, by_type["amount"].fn) == (0, 1, 1)
    assert by_type["city"].support == 1 and by_type["city"].precision == 0.0
    assert by_type["date"].support == 0 and by_type["date"].fp == 1


def test_entity_prf_without_predictions_or_gold_is_zero() -> None:
    assert metrics.entity_prf([set()], [set()]).f1 == 0.0
    assert metrics.entity_prf([{(0, 1, "x")}], [set()]).precision == 0.0


def test_percentile_interpolates_like_numpy() -> None:
    assert metrics.percentile([4, 1, 3, 2], 50) == 2.5
    assert metrics.percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert metrics.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        metrics.percentile([], 50)


def test_most_confused_and_confusion_matrix() -> None:
    gold = ["a", "a", "a", "b", "c", OOS]
    pred = ["b", "b", "a", "a", "c", "nlu_fallback"]
    assert metrics.most_confused(gold, pred) == [("a", "b", 2), ("b", "a", 1)]
    assert metrics.most_confused_labels(gold, pred, max_labels=5) == ["a", "b"]
    assert metrics.confusion_matrix(gold, pred, ["a", "b"]) == [[1, 2], [1, 0]]


def test_entity_token_prf_credits_the_right_words_of_a_partly_right_span() -> None:
    text = "wake me next friday at 7 am"
    gold = [{(8, 19, "date"), (23, 27, "time")}]  # "next friday", "7 am"
    pred = [{(13, 19, "date"), (23, 24, "time"), (0, 4, "event")}]  # "friday", "7", "wake"
    tokens = metrics.entity_token_prf([text], gold, pred)
    # friday, 7 right; next and am missed; wake spurious
    assert (tokens.tp, tokens.fp, tokens.fn) == (2, 1, 2)
    assert tokens.precision == pytest.approx(2 / 3)
    assert tokens.recall == pytest.approx(0.5)
    assert metrics.entity_prf(gold, pred).tp == 0  # no span is exactly right
    # a word with the wrong type is both a false positive and a false negative
    wrong = metrics.entity_token_prf(["to Anna"], [{(3, 7, "person")}], [{(3, 7, "city")}])
    assert (wrong.tp, wrong.fp, wrong.fn) == (0, 1, 1)
    # nothing to find and nothing found: zero, not an error
    assert metrics.entity_token_prf(["hello there"], [set()], [set()]).f1 == 0.0
    with pytest.raises(ValueError):
        metrics.entity_token_prf(["a", "b"], [set()], [set()])
