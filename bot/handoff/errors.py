"""Error vocabulary of the handoff package. Messages say what to do next."""

from __future__ import annotations

from bot.errors import FusionDeskError


class HandoffError(FusionDeskError):
    """Root of the handoff errors."""


class IllegalTransitionError(HandoffError):
    """A ticket cannot take this step from its current state."""


class TicketNotFoundError(HandoffError):
    """No ticket with this id."""


class TicketClosedError(HandoffError):
    """The ticket is resolved or handed back; nothing can be sent or changed on it."""


class AlreadyClaimedError(HandoffError):
    """Another operator claimed the ticket first."""


class NotYourTicketError(HandoffError):
    """The ticket belongs to another operator."""


class DuplicateMessageError(HandoffError):
    """A reply with this client message id was already accepted (a replayed request)."""


class OperatorExistsError(HandoffError):
    """An operator with this name already exists."""


class OperatorNotFoundError(HandoffError):
    """No operator with this name."""


class InvalidPasswordError(HandoffError):
    """A new password does not meet the rules."""


class RasaUnavailableError(HandoffError):
    """The Rasa server did not accept the events (down, wrong token, or an error)."""
