"""The handoff state machine, as a pure transition function.

A conversation is with the bot until a trigger opens a ticket; then it waits in the queue, an
operator claims it, and it ends either resolved (with a note) or handed back to the bot. An
operator may also release a claimed ticket back to the queue. Closed tickets never reopen: a new
handoff opens a new ticket, so each ticket's history stays what it was.

```
bot ──open──► waiting ──claim──► with_agent ──resolve───► resolved
                 ▲                  │   └────hand_back──► handed_back
                 └─────release──────┘
```
"""

from __future__ import annotations

from enum import Enum

from bot.handoff.errors import IllegalTransitionError


class TicketState(str, Enum):
    """Where a handed-off conversation is."""

    BOT = "bot"
    WAITING = "waiting"
    WITH_AGENT = "with_agent"
    RESOLVED = "resolved"
    HANDED_BACK = "handed_back"

    @property
    def is_open(self) -> bool:
        """True while a person owns or will own the conversation (the bot is paused)."""
        return self in OPEN_STATES


class TicketEvent(str, Enum):
    """What can happen to a ticket."""

    OPEN = "open"
    CLAIM = "claim"
    RELEASE = "release"
    HAND_BACK = "hand_back"
    RESOLVE = "resolve"


#: States in which the Rasa conversation is paused and messages are relayed.
OPEN_STATES: frozenset[TicketState] = frozenset({TicketState.WAITING, TicketState.WITH_AGENT})

#: Every legal step: (state, event) → next state.
TRANSITIONS: dict[tuple[TicketState, TicketEvent], TicketState] = {
    (TicketState.BOT, TicketEvent.OPEN): TicketState.WAITING,
    (TicketState.WAITING, TicketEvent.CLAIM): TicketState.WITH_AGENT,
    (TicketState.WITH_AGENT, TicketEvent.RELEASE): TicketState.WAITING,
    (TicketState.WITH_AGENT, TicketEvent.HAND_BACK): TicketState.HANDED_BACK,
    (TicketState.WITH_AGENT, TicketEvent.RESOLVE): TicketState.RESOLVED,
}


def transition(state: TicketState | str, event: TicketEvent | str) -> TicketState:
    """The state after `event` happens in `state`.

    Raises:
        IllegalTransitionError: the step is not allowed (for example claiming a resolved
            ticket); the message names the state and the steps it allows.
    """
    state = TicketState(state)
    event = TicketEvent(event)
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        raise IllegalTransitionError(
            f"cannot {event.value} a ticket that is {state.value}; "
            f"allowed: {', '.join(allowed) if allowed else 'nothing (the ticket is closed)'}"
        ) from None


def source_of(event: TicketEvent | str) -> TicketState:
    """The one state from which `event` is legal (a conditional UPDATE checks it in SQL)."""
    event = TicketEvent(event)
    sources = [state for (state, e) in TRANSITIONS if e is event]
    if len(sources) != 1:  # pragma: no cover - guarded by a test over every event
        raise IllegalTransitionError(
            f"{event.value} is legal from {len(sources)} states, expected 1"
        )
    return sources[0]
