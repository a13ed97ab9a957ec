"""Error vocabulary of the action server."""


class ActionServerError(Exception):
    """Root of every error raised by FusionDesk actions."""


class KnowledgeBaseError(ActionServerError):
    """The knowledge base could not be read or written."""
