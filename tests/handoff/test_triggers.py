"""Trigger rules and the wait estimate (pure)."""

from __future__ import annotations

import pytest

from bot.handoff.config import HandoffConfig
from bot.handoff.triggers import (
    HandoffReason,
    consecutive_fallbacks,
    estimate_wait_minutes,
    fallback_handoff_due,
    form_abandon_handoff_due,
    parse_reason,
    trigger_enabled,
)


def user(intent: str) -> dict:
    return {
        "event": "user",
        "text": "…",
        "parse_data": {"intent": {"name": intent, "confidence": 0.4}},
    }


BOT = {"event": "bot", "text": "Could you rephrase?"}
ACTION = {"event": "action", "name": "action_out_of_scope"}


def test_counts_fallbacks_in_a_row_from_the_newest() -> None:
    assert consecutive_fallbacks([]) == 0
    assert consecutive_fallbacks([user("greet"), BOT, user("nlu_fallback")]) == 1
    assert (
        consecutive_fallbacks([user("nlu_fallback"), ACTION, BOT, user("out_of_scope"), ACTION])
        == 2
    )
    assert (
        consecutive_fallbacks([user("nlu_fallback"), user("card_arrival"), user("nlu_fallback")])
        == 1
    )


def test_streak_stops_at_session_start_and_at_a_resume() -> None:
    assert (
        consecutive_fallbacks(
            [user("nlu_fallback"), {"event": "session_started"}, user("nlu_fallback")]
        )
        == 1
    )
    assert (
        consecutive_fallbacks([user("nlu_fallback"), {"event": "resume"}, user("nlu_fallback")])
        == 1
    )


def test_fallback_due_respects_config() -> None:
    events = [user("nlu_fallback"), BOT, user("out_of_scope")]
    assert fallback_handoff_due(events, HandoffConfig())
    assert not fallback_handoff_due(events[:1], HandoffConfig())
    assert not fallback_handoff_due(events, HandoffConfig(fallbacks_in_a_row=3))
    assert not fallback_handoff_due(events, HandoffConfig(fallbacks_in_a_row=0))


def test_form_abandon_due() -> None:
    config = HandoffConfig()
    assert not form_abandon_handoff_due(None, config)  # first abandoned form
    assert form_abandon_handoff_due(1, config)  # second
    assert form_abandon_handoff_due(1.0, config)  # slots are floats
    assert not form_abandon_handoff_due(5, HandoffConfig(forms_abandoned=0))


def test_trigger_enabled() -> None:
    off = HandoffConfig(
        request_human=False, fallbacks_in_a_row=0, kb_no_answer=False, forms_abandoned=0
    )
    for reason in HandoffReason:
        assert trigger_enabled(reason, HandoffConfig())
        assert not trigger_enabled(reason, off)


def test_parse_reason() -> None:
    assert parse_reason("kb_no_answer") is HandoffReason.KB_NO_ANSWER
    assert parse_reason(None) is HandoffReason.REQUEST_HUMAN
    assert parse_reason("nonsense", HandoffReason.FORM_ABANDONED) is HandoffReason.FORM_ABANDONED


@pytest.mark.parametrize(
    ("position", "online", "minutes", "expected"),
    [(1, 0, 5, 5), (3, 1, 5, 15), (3, 3, 5, 5), (1, 4, 5, 2), (0, 1, 0.1, 1), (2, 1, 2.5, 5)],
)
def test_wait_estimate(position: int, online: int, minutes: float, expected: int) -> None:
    assert estimate_wait_minutes(position, online, minutes) == expected
