"""The relay copies what Rasa's real SQL tracker store wrote into open tickets, once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("rasa")

from rasa.core.tracker_store import SQLTrackerStore  # noqa: E402
from rasa.shared.core.events import (  # noqa: E402
    ActionExecuted,
    BotUttered,
    ConversationPaused,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker  # noqa: E402

from bot.handoff.db import create_db_engine  # noqa: E402
from bot.handoff.relay import EventRelay, nlu_view  # noqa: E402
from bot.handoff.repository import HandoffRepository  # noqa: E402


def user(text: str, intent: str, ts: float, **extra: object) -> UserUttered:
    parse = {"intent": {"name": intent, "confidence": 0.87}, "entities": [], "text": text, **extra}
    return UserUttered(
        text, intent=parse["intent"], parse_data=parse, timestamp=ts, input_channel="socketio"
    )


class Rasa:
    """Writes events exactly as the Rasa server does (its SQLTrackerStore on the same file)."""

    def __init__(self, db_path: Path, sender_id: str) -> None:
        self.store = SQLTrackerStore(dialect="sqlite", db=str(db_path))
        self.tracker = DialogueStateTracker(sender_id, [])

    def log(self, *events: object) -> None:
        for event in events:
            self.tracker.update(event)
        asyncio.run(self.store.save(self.tracker))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[HandoffRepository, Rasa]:
    db = tmp_path / "fusiondesk.db"
    rasa = Rasa(db, "cust-1")
    repo = HandoffRepository(create_db_engine(f"sqlite:///{db}"), clock=lambda: 1000.0)
    return repo, rasa


def test_backfill_then_follow_without_duplicates(setup: tuple[HandoffRepository, Rasa]) -> None:
    repo, rasa = setup
    rasa.log(
        SessionStarted(timestamp=900.0),
        ActionExecuted("action_listen", timestamp=900.0),
        user("hello", "greet", 901.0),
        BotUttered("Hello! How can I help?", timestamp=902.0),
    )
    ticket, _ = repo.open_ticket("cust-1", "request_human", "socketio")  # opened at 1000
    rasa.log(
        user("I want to talk to a human", "request_human", 999.5),
        ActionExecuted("action_handoff", timestamp=1000.1),
        BotUttered("I'm connecting you …", timestamp=1000.2),
        ConversationPaused(timestamp=1000.3),
    )
    relay = EventRelay(repo)
    created = relay.run_once()
    transcript = repo.messages(ticket.id)
    assert [(m.author, m.text) for m in transcript] == [
        ("customer", "hello"),
        ("bot", "Hello! How can I help?"),
        ("customer", "I want to talk to a human"),
        ("bot", "I'm connecting you …"),
    ]
    assert sorted(created) == sorted(m.id for m in transcript)
    assert relay.run_once() == []  # nothing new

    # paused: the customer keeps writing, with a card number and the classifier's explanation
    rasa.log(
        user(
            "my card 4111 1111 1111 1111 was <b>stolen</b>",
            "lost_or_stolen_card",
            1001.0,
            explanation={"gate": 0.3, "syntax_cues": ["neg:not"]},
            entities=[
                {"entity": "card_number", "value": "4111 1111 1111 1111", "start": 8, "end": 27}
            ],
        ),
        SlotSet("card_number", "4111 1111 1111 1111", timestamp=1001.1),
        BotUttered(
            "reply from alice",
            metadata={"from_human": True, "agent_name": "alice"},
            timestamp=1002.0,
        ),
    )
    (new_id,) = EventRelay(
        repo
    ).run_once()  # a fresh relay (web server restarted) resumes from the stored cursor
    (message,) = repo.messages_by_id([new_id])
    assert message.author == "customer"
    assert message.text == "my card **** **** **** 1111 was <b>stolen</b>"
    assert message.nlu["intent"] == {"name": "lost_or_stolen_card", "confidence": 0.87}
    assert message.nlu["explanation"] == {"gate": 0.3, "syntax_cues": ["neg:not"]}
    assert message.nlu["entities"] == [{"entity": "card_number", "value": "**** **** **** 1111"}]
    assert message.nlu["slots"] == {"card_number": "**** **** **** 1111"}
    # the operator's own reply (stored by the console) is not copied a second time
    assert [m.author for m in repo.messages(ticket.id)].count("agent") == 0
    assert "4111" not in json.dumps([m.as_dict() for m in repo.messages(ticket.id)])


def test_only_conversations_with_an_open_ticket(setup: tuple[HandoffRepository, Rasa]) -> None:
    repo, rasa = setup
    rasa.log(user("hello", "greet", 901.0))
    assert EventRelay(repo).run_once() == []
    assert repo.list_tickets() == []


def test_new_rasa_session_is_paused_again(setup: tuple[HandoffRepository, Rasa]) -> None:
    repo, rasa = setup
    ticket, _ = repo.open_ticket("cust-1", "request_human", "socketio")
    rasa.log(user("help", "request_human", 999.0), ConversationPaused(timestamp=1000.5))
    relay = EventRelay(repo)
    relay.run_once()
    assert repo.pending_outbox() == []
    # the customer returns after the session expired: Rasa starts a new session (un-paused)
    rasa.log(
        SessionStarted(timestamp=5000.0),
        ActionExecuted("action_listen", timestamp=5000.0),
        user("anyone?", "greet", 5001.0),
    )
    relay.run_once()
    (item,) = repo.pending_outbox()
    assert item.events == [{"event": "pause"}] and item.sender_id == "cust-1"
    authors = [m.author for m in repo.messages(ticket.id)]
    assert authors[-2:] == ["system", "customer"]


def test_nlu_view_keeps_the_bots_view_only() -> None:
    view = nlu_view(
        {
            "text": "hi",
            "message_id": "x",
            "intent": {"name": "greet", "confidence": 0.9},
            "intent_ranking": [{"name": f"i{n}", "confidence": 0.1} for n in range(10)],
            "response_selector": {"big": "thing"},
            "explanation": {"gate": 0.7},
        }
    )
    assert set(view) == {"intent", "intent_ranking", "explanation"}
    assert len(view["intent_ranking"]) == 5
    assert nlu_view(None) is None


def test_lookback_rereads_without_duplicates(setup: tuple[HandoffRepository, Rasa]) -> None:
    """With a look-back (used on PostgreSQL) re-read events are not copied twice."""
    repo, rasa = setup
    ticket, _ = repo.open_ticket("cust-1", "request_human", "socketio")
    rasa.log(user("first", "greet", 1001.0))
    relay = EventRelay(repo, lookback=100)
    assert len(relay.run_once()) == 1
    rasa.log(user("second", "greet", 1002.0))
    assert len(relay.run_once()) == 1
    assert [m.text for m in repo.messages(ticket.id)] == ["first", "second"]
    assert relay.run_once() == []
