"""The `handoff:` section of fusiondesk.yml."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.handoff.config import HandoffConfig, config_path, get_default_config


def test_defaults_when_no_file(tmp_path: Path) -> None:
    config = HandoffConfig.load(tmp_path / "missing.yml")
    assert config == HandoffConfig.from_mapping(None)
    assert config.request_human and config.kb_no_answer
    assert config.fallbacks_in_a_row == 2 and config.forms_abandoned == 2
    assert config.opening_hours.always_open


def test_dataclass_defaults_match_get_default_config() -> None:
    defaults = get_default_config()
    config = HandoffConfig()
    for key in ("request_human", "fallbacks_in_a_row", "kb_no_answer", "forms_abandoned"):
        assert getattr(config, key) == defaults[key]
    assert config.average_handling_minutes == defaults["average_handling_minutes"]


def test_reads_the_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fusiondesk.yml"
    path.write_text(
        "other_feature: {x: 1}\n"
        "handoff:\n"
        "  fallbacks_in_a_row: 3\n"
        "  forms_abandoned: 0\n"
        "  opening_hours: {timezone: UTC, mon-fri: '08:00-16:00'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("FUSIONDESK_CONFIG", str(path))
    assert config_path() == path
    config = HandoffConfig.load()
    assert config.fallbacks_in_a_row == 3
    assert config.forms_abandoned == 0
    assert not config.opening_hours.always_open


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("fallbacks_in_row: 2", "unknown key"),
        ("fallbacks_in_a_row: -1", "whole number"),
        ("fallbacks_in_a_row: yes", "whole number"),
        ("request_human: 1", "true or false"),
        ("average_handling_minutes: 0", "> 0"),
        ("resolved_message: ''", "non-empty"),
        ("opening_hours: always", "mapping"),
    ],
)
def test_invalid_values_are_errors_naming_the_file(
    tmp_path: Path, section: str, message: str
) -> None:
    path = tmp_path / "fusiondesk.yml"
    path.write_text(f"handoff:\n  {section}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        HandoffConfig.load(path)
    assert str(path) in str(info.value)


def test_unreadable_yaml(tmp_path: Path) -> None:
    path = tmp_path / "fusiondesk.yml"
    path.write_text("handoff: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read"):
        HandoffConfig.load(path)


def test_shipped_file_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[2] / "fusiondesk.yml"
    if shipped.exists():
        HandoffConfig.load(shipped)
