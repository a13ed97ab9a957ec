"""Handoff configuration: the `handoff:` section of `fusiondesk.yml`.

The file is `fusiondesk.yml` at the project root, or the path in `FUSIONDESK_CONFIG`. A missing
file or section means the defaults below (every trigger on, always open). Unknown keys are an
error, so a typo never silently turns a trigger off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError
from bot.handoff.hours import OpeningHours
from bot.settings import PROJECT_ROOT


def config_path() -> Path:
    """`FUSIONDESK_CONFIG`, else `fusiondesk.yml` at the project root."""
    return Path(os.environ.get("FUSIONDESK_CONFIG") or PROJECT_ROOT / "fusiondesk.yml")


def get_default_config() -> dict[str, Any]:
    """Defaults of the `handoff:` section, one comment per key."""
    return {
        # The customer asks for a person (intent request_human → action_handoff).
        "request_human": True,
        # Hand off after this many NLU fallbacks / out_of_scope messages in a row (0: never).
        "fallbacks_in_a_row": 2,
        # Hand off when the knowledge base still has no answer after one rephrase.
        "kb_no_answer": True,
        # Hand off when the customer abandons forms this many times in a conversation (0: never).
        "forms_abandoned": 2,
        # Average minutes an operator spends on one ticket (for the wait the customer is told).
        "average_handling_minutes": 5,
        # When operators answer; empty: around the clock. See bot/handoff/hours.py.
        "opening_hours": None,
        # Hours a console sign-in lasts without activity.
        "console_session_hours": 8,
        # Told to the customer when an operator hands the chat back to the bot.
        "handed_back_message": "You're back with the assistant. Is there anything else I can help with?",
        # Told to the customer when an operator resolves the ticket.
        "resolved_message": "Our colleague has marked your request as resolved. If you need anything else, just write here.",
    }


@dataclass(frozen=True)
class HandoffConfig:
    """Validated handoff settings (see `get_default_config` for what each one means)."""

    request_human: bool = True
    fallbacks_in_a_row: int = 2
    kb_no_answer: bool = True
    forms_abandoned: int = 2
    average_handling_minutes: float = 5.0
    opening_hours: OpeningHours = field(default_factory=OpeningHours)
    console_session_hours: float = 8.0
    handed_back_message: str = get_default_config()["handed_back_message"]
    resolved_message: str = get_default_config()["resolved_message"]

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> HandoffConfig:
        """Validate a `handoff:` mapping (merged over the defaults)."""
        values = get_default_config()
        unknown = sorted(set(raw or {}) - set(values))
        if unknown:
            raise ConfigError(
                f"handoff: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(values))}"
            )
        values.update(raw or {})

        def count(key: str) -> int:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"handoff.{key} must be a whole number ≥ 0 (0 turns it off), not {value!r}"
                )
            return value

        def flag(key: str) -> bool:
            if not isinstance(values[key], bool):
                raise ConfigError(f"handoff.{key} must be true or false, not {values[key]!r}")
            return bool(values[key])

        def positive(key: str) -> float:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"handoff.{key} must be a number > 0, not {value!r}")
            return float(value)

        def text(key: str) -> str:
            if not isinstance(values[key], str) or not values[key].strip():
                raise ConfigError(f"handoff.{key} must be a non-empty text")
            return str(values[key])

        hours = values["opening_hours"]
        if hours is not None and not isinstance(hours, Mapping):
            raise ConfigError("handoff.opening_hours must be a mapping (see README) or empty")
        return cls(
            request_human=flag("request_human"),
            fallbacks_in_a_row=count("fallbacks_in_a_row"),
            kb_no_answer=flag("kb_no_answer"),
            forms_abandoned=count("forms_abandoned"),
            average_handling_minutes=positive("average_handling_minutes"),
            opening_hours=OpeningHours.from_config(hours),
            console_session_hours=positive("console_session_hours"),
            handed_back_message=text("handed_back_message"),
            resolved_message=text("resolved_message"),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> HandoffConfig:
        """Read the `handoff:` section of the config file (defaults when absent)."""
        path = path or config_path()
        if not path.exists():
            return cls.from_mapping(None)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e
        if not isinstance(document, Mapping):
            raise ConfigError(f"{path} must be a YAML mapping with a `handoff:` section")
        section = document.get("handoff")
        if section is not None and not isinstance(section, Mapping):
            raise ConfigError(f"{path}: `handoff:` must be a mapping")
        try:
            return cls.from_mapping(section)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
