"""Messaging channels the Rasa server accepts besides its built-in ones (Telegram, ...)."""
