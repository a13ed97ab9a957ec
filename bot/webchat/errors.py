"""Errors of the web chat (widget assets and history endpoint). Messages say what to do next."""

from bot.errors import FusionDeskError


class WebChatError(FusionDeskError):
    """Root of the web chat's errors."""


class WebChatAssetsError(WebChatError):
    """The widget's browser dependencies (socket.io-client) cannot be installed or found."""


class HistoryUnavailableError(WebChatError):
    """The conversation history cannot be fetched from the Rasa server."""
