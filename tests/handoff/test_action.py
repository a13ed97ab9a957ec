"""The handoff actions with real rasa_sdk trackers on a real SQLite database."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionFormAbandoned, ActionHandoff, fallback_handoff_events
from bot.handoff.db import get_engine
from bot.handoff.repository import HandoffRepository
from bot.handoff.states import TicketState
from tests.support import action_server, child_env, free_port

ALWAYS_OPEN = "handoff: {}\n"
CLOSED_NOW = "handoff:\n  opening_hours: {timezone: UTC, mon: '00:00-00:01', closed_dates: []}\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "fusiondesk.db"
    monkeypatch.setenv("FUSIONDESK_DB_URL", f"sqlite:///{db}")
    config = tmp_path / "fusiondesk.yml"
    config.write_text(ALWAYS_OPEN, encoding="utf-8")
    monkeypatch.setenv("FUSIONDESK_CONFIG", str(config))
    return tmp_path


def repo(env: Path) -> HandoffRepository:
    return HandoffRepository(get_engine(f"sqlite:///{env / 'fusiondesk.db'}"))


def tracker(
    sender: str = "cust-1",
    intent: str = "request_human",
    slots: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> Tracker:
    latest = {
        "text": "a person please",
        "intent": {"name": intent, "confidence": 0.9},
        "entities": [],
    }
    events = (
        events
        if events is not None
        else [
            {"event": "action", "name": "action_listen"},
            {
                "event": "user",
                "text": "a person please",
                "parse_data": latest,
                "input_channel": "socketio",
            },
        ]
    )
    return Tracker(sender, slots or {}, latest, events, False, None, {}, "action_listen")


def run(action: Any, tracker: Tracker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return events, dispatcher.messages


def test_request_human_opens_a_ticket_and_pauses(env: Path) -> None:
    events, messages = run(ActionHandoff(), tracker())
    (ticket,) = repo(env).list_tickets()
    assert ticket.sender_id == "cust-1" and ticket.state is TicketState.WAITING
    assert (
        ticket.reason == "request_human" and ticket.channel == "socketio" and not ticket.after_hours
    )
    assert events[-1] == {"event": "pause", "timestamp": None}
    assert {"event": "slot", "timestamp": None, "name": "handoff_active", "value": True} in events
    (message,) = messages
    assert message["response"] == "utter_handoff_queued"
    assert message["position"] == 1 and message["wait"] == "5 minutes"


def test_queue_position_grows(env: Path) -> None:
    run(ActionHandoff(), tracker("a"))
    _, messages = run(ActionHandoff(), tracker("b"))
    assert messages[0]["position"] == 2 and messages[0]["wait"] == "10 minutes"


def test_idempotent_when_a_ticket_is_open(env: Path) -> None:
    run(ActionHandoff(), tracker())
    events, messages = run(ActionHandoff(), tracker())
    assert len(repo(env).list_tickets()) == 1
    assert messages[0]["response"] == "utter_handoff_already_waiting"
    assert events[-1]["event"] == "pause"


def test_reason_from_slot(env: Path) -> None:
    run(ActionHandoff(), tracker(intent="card_arrival", slots={"handoff_reason": "kb_no_answer"}))
    assert repo(env).list_tickets()[0].reason == "kb_no_answer"


def test_outside_opening_hours_keeps_the_ticket_and_says_when(env: Path) -> None:
    (env / "fusiondesk.yml").write_text(CLOSED_NOW, encoding="utf-8")
    events, messages = run(ActionHandoff(), tracker())
    (ticket,) = repo(env).list_tickets()
    assert ticket.after_hours and ticket.state is TicketState.WAITING
    assert messages[0]["response"] == "utter_handoff_after_hours"
    assert messages[0]["hours"] == "Mon 00:00–00:01 (UTC)"
    assert messages[0]["opening"].endswith("at 00:00")
    assert events[-1]["event"] == "pause"


def test_disabled_trigger_opens_nothing(env: Path) -> None:
    (env / "fusiondesk.yml").write_text("handoff:\n  request_human: false\n", encoding="utf-8")
    events, messages = run(ActionHandoff(), tracker())
    assert repo(env).list_tickets() == []
    assert messages[0]["response"] == "utter_handoff_unavailable"
    assert all(e["event"] != "pause" for e in events)


def test_database_failure_does_not_pause(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONDESK_DB_URL", f"sqlite:///{env / 'missing-dir' / 'x.db'}")
    events, messages = run(ActionHandoff(), tracker())
    assert messages[0]["response"] == "utter_handoff_failed"
    assert all(e["event"] != "pause" for e in events)


def fallback_events(*intents: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for intent in intents:
        events.append({"event": "user", "text": "?", "parse_data": {"intent": {"name": intent}}})
        events.append({"event": "bot", "text": "Could you rephrase?"})
    return events


def test_fallback_twice_hands_off(env: Path) -> None:
    once = fallback_handoff_events(tracker(events=fallback_events("greet", "nlu_fallback")))
    assert once == []
    twice = fallback_handoff_events(tracker(events=fallback_events("nlu_fallback", "out_of_scope")))
    assert {"event": "followup", "timestamp": None, "name": "action_handoff"} in twice
    assert {
        "event": "slot",
        "timestamp": None,
        "name": "handoff_reason",
        "value": "nlu_fallback_twice",
    } in twice
    (env / "fusiondesk.yml").write_text("handoff:\n  fallbacks_in_a_row: 3\n", encoding="utf-8")
    assert (
        fallback_handoff_events(tracker(events=fallback_events("nlu_fallback", "out_of_scope")))
        == []
    )
    # the follow-up then opens a ticket with that reason
    run(
        ActionHandoff(),
        tracker(intent="out_of_scope", slots={"handoff_reason": "nlu_fallback_twice"}),
    )
    assert repo(env).list_tickets()[0].reason == "nlu_fallback_twice"


def test_second_abandoned_form_hands_off(env: Path) -> None:
    first, _ = run(ActionFormAbandoned(), tracker(slots={"forms_abandoned": 0.0}))
    assert first == [{"event": "slot", "timestamp": None, "name": "forms_abandoned", "value": 1.0}]
    second, _ = run(ActionFormAbandoned(), tracker(slots={"forms_abandoned": 1.0}))
    assert second[0]["value"] == 2.0
    assert {"event": "followup", "timestamp": None, "name": "action_handoff"} in second
    assert {
        "event": "slot",
        "timestamp": None,
        "name": "handoff_reason",
        "value": "form_abandoned",
    } in second


@pytest.mark.slow
@pytest.mark.integration
def test_through_the_real_action_server(tmp_path: Path) -> None:
    """Rasa's HTTP call to the real rasa_sdk server runs the action against the database."""
    db_url = f"sqlite:///{tmp_path / 'fusiondesk.db'}"
    port = free_port()
    env = child_env(FUSIONDESK_DB_URL=db_url, FUSIONDESK_CONFIG=str(tmp_path / "none.yml"))
    with action_server(tmp_path, port, env) as url:  # actions import through PYTHONPATH
        body = {
            "next_action": "action_handoff",
            "sender_id": "http-customer",
            "tracker": {
                "sender_id": "http-customer",
                "slots": {},
                "latest_message": {
                    "text": "human",
                    "intent": {"name": "request_human"},
                    "entities": [],
                },
                "events": [
                    {"event": "user", "text": "human", "input_channel": "rest", "parse_data": {}}
                ],
                "paused": False,
                "latest_input_channel": "rest",
                "active_loop": {},
                "latest_action_name": "action_listen",
            },
            "domain": {},
            "version": "3.6.2",
        }
        request = urllib.request.Request(
            url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        for _ in range(2):  # the second call finds the open ticket
            with urllib.request.urlopen(request, timeout=30) as response:
                result = json.load(response)
    assert result["events"][-1]["event"] == "pause"
    assert result["responses"][0]["response"] == "utter_handoff_already_waiting"
    (ticket,) = HandoffRepository(get_engine(db_url)).list_tickets()
    assert ticket.sender_id == "http-customer" and ticket.channel == "rest"
