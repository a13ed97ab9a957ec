"""Opening hours: open or not, the next opening, and errors that say what to fix."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.errors import ConfigError
from bot.handoff.hours import OpeningHours, describe_moment

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = OpeningHours.from_config(
    {
        "timezone": "Europe/Berlin",
        "mon-fri": "09:00-17:30",
        "sat": ["10:00-12:00", "13:00-14:00"],
        "closed_dates": ["2025-12-25"],
    }
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_nothing_configured_is_always_open() -> None:
    hours = OpeningHours.from_config(None)
    assert hours.always_open
    assert hours.is_open(datetime(2025, 1, 5, 3, 0, tzinfo=timezone.utc))
    assert hours.describe() == "around the clock"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(2025, 12, 22, 9, 0), True),  # Monday, opening minute
        (at(2025, 12, 22, 17, 29), True),
        (at(2025, 12, 22, 17, 30), False),  # closing is exclusive
        (at(2025, 12, 22, 8, 59), False),
        (at(2025, 12, 27, 12, 30), False),  # Saturday lunch break
        (at(2025, 12, 27, 13, 30), True),
        (at(2025, 12, 28, 11, 0), False),  # Sunday not listed
        (at(2025, 12, 25, 11, 0), False),  # closed date (a Thursday)
    ],
)
def test_is_open(moment: datetime, expected: bool) -> None:
    assert HOURS.is_open(moment) is expected


def test_other_time_zones_are_converted() -> None:
    # 08:30 UTC in December is 09:30 in Berlin
    assert HOURS.is_open(datetime(2025, 12, 22, 8, 30, tzinfo=timezone.utc))


def test_next_opening_skips_evening_weekend_and_holidays() -> None:
    assert HOURS.next_opening(at(2025, 12, 22, 18, 0)) == at(2025, 12, 23, 9, 0)
    assert HOURS.next_opening(at(2025, 12, 27, 12, 30)) == at(2025, 12, 27, 13, 0)
    assert HOURS.next_opening(at(2025, 12, 27, 15, 0)) == at(2025, 12, 29, 9, 0)  # Sat → Mon
    assert HOURS.next_opening(at(2025, 12, 24, 20, 0)) == at(2025, 12, 26, 9, 0)  # skips 25th
    assert HOURS.next_opening(at(2025, 12, 22, 10, 0)) == at(2025, 12, 22, 10, 0)  # open now


def test_never_open_has_no_next_opening() -> None:
    hours = OpeningHours.from_config({"timezone": "UTC", "mon": "closed"})
    assert hours.next_opening(datetime(2025, 1, 1, tzinfo=timezone.utc)) is None


def test_midnight_end() -> None:
    hours = OpeningHours.from_config({"timezone": "UTC", "mon-sun": "00:00-24:00"})
    assert hours.is_open(datetime(2025, 1, 1, 23, 59, 59, tzinfo=timezone.utc))
    assert hours.describe() == "Mon–Sun 00:00–24:00 (UTC)"


def test_describe_groups_days() -> None:
    assert HOURS.describe() == "Mon–Fri 09:00–17:30; Sat 10:00–12:00, 13:00–14:00 (Europe/Berlin)"


def test_describe_moment() -> None:
    now = at(2025, 12, 22, 18, 0)
    assert describe_moment(at(2025, 12, 22, 19, 0), now) == "today at 19:00"
    assert describe_moment(at(2025, 12, 23, 9, 0), now) == "tomorrow at 09:00"
    assert describe_moment(at(2025, 12, 26, 9, 0), now) == "on Friday at 09:00"
    assert describe_moment(at(2026, 1, 5, 9, 0), now) == "on 5 January at 09:00"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"funday": "09:00-10:00"}, "not a day"),
        ({"fri-mon": "09:00-10:00"}, "forwards"),
        ({"mon": "9-17"}, "not a time"),
        ({"mon": "17:00-09:00"}, "must end after"),
        ({"mon": "09:00"}, "not a range"),
        ({"mon": "25:00-26:00"}, "between 00:00 and 24:00"),
        ({"closed_dates": ["christmas"]}, "not a date"),
    ],
)
def test_bad_configuration_says_what_to_fix(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OpeningHours.from_config(raw)
