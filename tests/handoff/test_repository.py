"""Tickets on a real SQLite file: idempotent opening, race-free claims, ownership, closing."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.handoff.db import create_db_engine
from bot.handoff.errors import (
    AlreadyClaimedError,
    DuplicateMessageError,
    NotYourTicketError,
    OperatorExistsError,
    OperatorNotFoundError,
    TicketClosedError,
    TicketNotFoundError,
)
from bot.handoff.rasa_client import agent_reply_events, hand_back_events
from bot.handoff.repository import HandoffRepository
from bot.handoff.states import TicketEvent, TicketState


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fusiondesk.db'}"


@pytest.fixture
def repo(db_url: str) -> HandoffRepository:
    return HandoffRepository(create_db_engine(db_url))


def operators(repo: HandoffRepository, *names: str) -> list[int]:
    return [repo.add_operator(name, "argon2-hash-placeholder").id for name in names]


def test_tables_are_created_idempotently_in_wal_mode(db_url: str) -> None:
    engine = create_db_engine(db_url)
    create_db_engine(db_url)  # a second process starting: no error
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar()) >= 5000
        tables = set(sa.inspect(connection).get_table_names())
    assert {
        "handoff_tickets",
        "handoff_messages",
        "handoff_operators",
        "handoff_console_sessions",
        "handoff_outbox",
    } <= tables


def test_open_is_idempotent_per_conversation(repo: HandoffRepository) -> None:
    first, created = repo.open_ticket("customer-1", "request_human", "socketio")
    assert created and first.state is TicketState.WAITING and first.channel == "socketio"
    again, created_again = repo.open_ticket("customer-1", "kb_no_answer", "socketio")
    assert not created_again and again.id == first.id and again.reason == "request_human"
    other, created_other = repo.open_ticket("customer-2", "request_human", None)
    assert created_other and other.id != first.id
    assert repo.queue_position(first.id) == 1 and repo.queue_position(other.id) == 2


def test_concurrent_start_and_opens_create_one_ticket(db_url: str) -> None:
    """Six "processes" create the tables and open a ticket for one customer at the same moment."""
    barrier = threading.Barrier(6, timeout=60)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            repo = HandoffRepository(create_db_engine(db_url))  # own engine: creates the tables
            ticket, created = repo.open_ticket("same-customer", "request_human", "rest")
            results.append((ticket.id, created))
        except BaseException as e:  # report in the test, never hang the barrier
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({ticket_id for ticket_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def _claim_in_thread(
    db_url: str,
    ticket_id: int,
    operator_id: int,
    barrier: threading.Barrier,
    outcomes: dict[int, str],
) -> None:
    own = HandoffRepository(create_db_engine(db_url))  # own engine and pool, like another process
    barrier.wait(timeout=60)
    try:
        own.claim(ticket_id, operator_id)
        outcomes[operator_id] = "won"
    except AlreadyClaimedError:
        outcomes[operator_id] = "lost"


def test_two_claims_at_once_exactly_one_wins_threads(db_url: str) -> None:
    repo = HandoffRepository(create_db_engine(db_url))
    alice, bob = operators(repo, "alice", "bob")
    for round_ in range(15):
        ticket, _ = repo.open_ticket(f"customer-{round_}", "request_human", "rest")
        barrier = threading.Barrier(2, timeout=60)
        outcomes: dict[int, str] = {}
        threads = [
            threading.Thread(
                target=_claim_in_thread, args=(db_url, ticket.id, op, barrier, outcomes)
            )
            for op in (alice, bob)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes.values()) == ["lost", "won"], outcomes
        winner = next(op for op, outcome in outcomes.items() if outcome == "won")
        stored = repo.get_ticket(ticket.id)
        assert stored.state is TicketState.WITH_AGENT and stored.agent_id == winner


def _claim_in_process(db_url: str, ticket_id: int, operator_id: int, barrier, results) -> None:  # noqa: ANN001
    repo = HandoffRepository(create_db_engine(db_url))
    barrier.wait(timeout=60)
    try:
        repo.claim(ticket_id, operator_id)
        results.put((operator_id, "won"))
    except AlreadyClaimedError:
        results.put((operator_id, "lost"))


def test_two_claims_at_once_exactly_one_wins_processes(db_url: str) -> None:
    repo = HandoffRepository(create_db_engine(db_url))
    alice, bob = operators(repo, "alice", "bob")
    ticket, _ = repo.open_ticket("customer-p", "request_human", "rest")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2, timeout=120), context.Queue()
    processes = [
        context.Process(target=_claim_in_process, args=(db_url, ticket.id, op, barrier, results))
        for op in (alice, bob)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    outcomes = dict(results.get(timeout=5) for _ in processes)
    assert sorted(outcomes.values()) == ["lost", "won"]
    assert repo.get_ticket(ticket.id).agent_id == next(
        op for op, o in outcomes.items() if o == "won"
    )


def test_claim_errors(repo: HandoffRepository) -> None:
    alice, bob = operators(repo, "alice", "bob")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(ticket.id, alice)
    with pytest.raises(AlreadyClaimedError, match="alice"):
        repo.claim(ticket.id, bob)
    with pytest.raises(TicketNotFoundError):
        repo.claim(9999, bob)


def test_only_the_owner_may_act(repo: HandoffRepository) -> None:
    alice, bob = operators(repo, "alice", "bob")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    with pytest.raises(NotYourTicketError, match="claim it"):
        repo.add_agent_message(ticket.id, alice, "hi", None, agent_reply_events)
    repo.claim(ticket.id, alice)
    with pytest.raises(NotYourTicketError, match="alice"):
        repo.add_agent_message(ticket.id, bob, "hi", None, agent_reply_events)
    with pytest.raises(NotYourTicketError):
        repo.close(ticket.id, bob, TicketEvent.RESOLVE, [], "done", note="x")
    with pytest.raises(NotYourTicketError):
        repo.release(ticket.id, bob)


def test_release_puts_the_ticket_back(repo: HandoffRepository) -> None:
    alice, bob = operators(repo, "alice", "bob")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(ticket.id, alice)
    released = repo.release(ticket.id, alice)
    assert released.state is TicketState.WAITING and released.agent_id is None
    assert repo.claim(ticket.id, bob).agent_id == bob


def test_reply_is_masked_stored_and_queued(repo: HandoffRepository) -> None:
    (alice,) = operators(repo, "alice")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(ticket.id, alice)
    message = repo.add_agent_message(
        ticket.id, alice, "Card 4111 1111 1111 1111 <b>ok</b>", "client-0001", agent_reply_events
    )
    assert message.text == "Card **** **** **** 1111 <b>ok</b>"
    assert message.delivery == "pending" and message.agent_name == "alice"
    with pytest.raises(DuplicateMessageError):
        repo.add_agent_message(ticket.id, alice, "again", "client-0001", agent_reply_events)
    (item,) = repo.pending_outbox()
    assert item.sender_id == "c" and item.message_id == message.id
    assert item.events == [
        {
            "event": "bot",
            "text": "Card **** **** **** 1111 <b>ok</b>",
            "metadata": {"from_human": True, "agent_name": "alice"},
        }
    ]
    assert repo.mark_delivered(item.id) == message.id
    assert repo.pending_outbox() == []
    assert repo.messages(ticket.id)[-1].delivery == "delivered"


def test_failed_delivery_stays_pending(repo: HandoffRepository) -> None:
    (alice,) = operators(repo, "alice")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(ticket.id, alice)
    repo.add_agent_message(ticket.id, alice, "hello", None, agent_reply_events)
    (item,) = repo.pending_outbox()
    repo.mark_failed(item.id, "Rasa down")
    (again,) = repo.pending_outbox()
    assert again.id == item.id and again.attempts == 1


@pytest.mark.parametrize("event", [TicketEvent.HAND_BACK, TicketEvent.RESOLVE])
def test_closing_queues_the_resume_and_refuses_later_replies(
    repo: HandoffRepository, event: TicketEvent
) -> None:
    (alice,) = operators(repo, "alice")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(ticket.id, alice)
    closed = repo.close(
        ticket.id, alice, event, hand_back_events("bye"), "bye", note="refund 4111111111111111"
    )
    assert closed.state is (
        TicketState.HANDED_BACK if event is TicketEvent.HAND_BACK else TicketState.RESOLVED
    )
    assert closed.closed_at is not None
    assert closed.resolution_note == "refund ************1111"
    (item,) = repo.pending_outbox()
    assert {"event": "resume"} in item.events
    assert repo.messages(ticket.id)[-1].author == "system"
    with pytest.raises(TicketClosedError, match="back with the bot"):
        repo.add_agent_message(ticket.id, alice, "still there?", None, agent_reply_events)
    with pytest.raises(TicketClosedError):
        repo.claim(ticket.id, alice)
    # the conversation can be handed off again later: a new ticket
    new, created = repo.open_ticket("c", "request_human", "rest")
    assert created and new.id != ticket.id


def test_operators_and_sessions(repo: HandoffRepository) -> None:
    clock = [1000.0]
    repo.clock = lambda: clock[0]
    (alice,) = operators(repo, "alice")
    with pytest.raises(OperatorExistsError):
        repo.add_operator("alice", "x")
    assert repo.credentials("alice")[1] == "argon2-hash-placeholder"
    assert repo.credentials("nobody") is None
    repo.create_session(alice, "hash-1", "csrf-1", ttl_s=100)
    assert repo.session_for("hash-1", 100).csrf_token == "csrf-1"
    assert repo.operators_online() == 1
    clock[0] += 99  # used within its lifetime: the expiry slides to 1199
    assert repo.session_for("hash-1", 100) is not None
    clock[0] += 90  # 1189: alive only because it slid; now slides to 1289
    assert repo.session_for("hash-1", 100) is not None
    clock[0] += 101  # 1290: idle longer than the lifetime
    assert repo.session_for("hash-1", 100) is None
    repo.create_session(alice, "hash-2", "csrf-2", ttl_s=100)
    repo.delete_session("hash-2")
    assert repo.session_for("hash-2", 100) is None


def test_deactivating_an_operator_ends_sessions_and_frees_tickets(repo: HandoffRepository) -> None:
    (alice,) = operators(repo, "alice")
    ticket, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(ticket.id, alice)
    repo.create_session(alice, "h", "c", ttl_s=100)
    repo.deactivate_operator("alice")
    assert repo.session_for("h", 100) is None
    assert repo.credentials("alice") is None
    assert repo.get_ticket(ticket.id).state is TicketState.WAITING
    with pytest.raises(OperatorNotFoundError):
        repo.deactivate_operator("ghost")


def test_list_tickets_orders_waiting_first(repo: HandoffRepository) -> None:
    (alice,) = operators(repo, "alice")
    a, _ = repo.open_ticket("a", "request_human", "rest")
    b, _ = repo.open_ticket("b", "request_human", "rest")
    c, _ = repo.open_ticket("c", "request_human", "rest")
    repo.claim(a.id, alice)
    repo.close(a.id, alice, TicketEvent.HAND_BACK, [], "bye")
    repo.claim(b.id, alice)
    listed = repo.list_tickets(closed_since=0)
    assert [t.id for t in listed] == [c.id, b.id, a.id]
    assert [t.id for t in repo.list_tickets()] == [c.id, b.id]
    assert json.dumps(listed[0].as_dict())  # serialisable for the API
