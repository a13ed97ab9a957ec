"""Tests of the action server."""
