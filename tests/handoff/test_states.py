"""The handoff state machine: every legal step, and every other step refused."""

from __future__ import annotations

import itertools

import pytest

from bot.handoff.errors import IllegalTransitionError
from bot.handoff.states import (
    OPEN_STATES,
    TRANSITIONS,
    TicketEvent,
    TicketState,
    source_of,
    transition,
)

LEGAL = {
    (TicketState.BOT, TicketEvent.OPEN): TicketState.WAITING,
    (TicketState.WAITING, TicketEvent.CLAIM): TicketState.WITH_AGENT,
    (TicketState.WITH_AGENT, TicketEvent.RELEASE): TicketState.WAITING,
    (TicketState.WITH_AGENT, TicketEvent.HAND_BACK): TicketState.HANDED_BACK,
    (TicketState.WITH_AGENT, TicketEvent.RESOLVE): TicketState.RESOLVED,
}


@pytest.mark.parametrize(("state", "event"), list(LEGAL))
def test_every_legal_transition(state: TicketState, event: TicketEvent) -> None:
    assert transition(state, event) is LEGAL[(state, event)]
    # plain strings (as stored in the database) work the same
    assert transition(state.value, event.value) is LEGAL[(state, event)]


ILLEGAL = [pair for pair in itertools.product(TicketState, TicketEvent) if pair not in LEGAL]


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_every_other_transition_raises(state: TicketState, event: TicketEvent) -> None:
    with pytest.raises(IllegalTransitionError, match=f"cannot {event.value}"):
        transition(state, event)


def test_table_is_exactly_the_documented_machine() -> None:
    assert TRANSITIONS == LEGAL


def test_closed_tickets_allow_nothing_and_say_so() -> None:
    for state in (TicketState.RESOLVED, TicketState.HANDED_BACK):
        with pytest.raises(IllegalTransitionError, match="closed"):
            transition(state, TicketEvent.CLAIM)


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError):
        transition("sleeping", TicketEvent.CLAIM)
    with pytest.raises(ValueError):
        transition(TicketState.WAITING, "teleport")


def test_each_event_has_one_source_state() -> None:
    assert source_of(TicketEvent.OPEN) is TicketState.BOT
    assert source_of(TicketEvent.CLAIM) is TicketState.WAITING
    for event in (TicketEvent.RELEASE, TicketEvent.HAND_BACK, TicketEvent.RESOLVE):
        assert source_of(event) is TicketState.WITH_AGENT


def test_open_states_are_waiting_and_with_agent() -> None:
    assert OPEN_STATES == {TicketState.WAITING, TicketState.WITH_AGENT}
    assert [s for s in TicketState if s.is_open] == [TicketState.WAITING, TicketState.WITH_AGENT]
