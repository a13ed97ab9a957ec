"""Errors of the benchmark harness (subclasses of the runtime's `FusionDeskError`).

The CLI prints their message and exits with status 2, so each message says what to fix.
"""

from __future__ import annotations

from bot.errors import FusionDeskError


class BenchError(FusionDeskError):
    """Root of the benchmark harness's errors."""


class BenchDataError(BenchError):
    """A data file is missing, empty or not in the JSONL utterance format."""


class PipelineConfigError(BenchError):
    """A pipeline name is unknown or the configuration it derives from does not fit."""


class PipelineRunError(BenchError):
    """Training or parsing a pipeline failed in its child process."""
