"""The web server on the web port: chat page, widget assets and the operator console."""
