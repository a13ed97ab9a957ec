"""Tests of the messaging channels (bot/channels)."""
