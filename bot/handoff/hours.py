"""Opening hours of the support team: is someone there now, and when is the next opening.

Pure: given a configured week, closed dates and an aware `datetime`, no clock is read here.
Configured in `fusiondesk.yml` (see `bot.handoff.config`), for example::

    opening_hours:
      timezone: Europe/London
      mon-fri: "09:00-17:30"
      sat: ["10:00-12:00", "13:00-16:00"]
      closed_dates: ["2025-12-25"]

Days that are not listed are closed; `24:00` ends a range at midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ConfigError

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DISPLAY = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_END_OF_DAY = time(23, 59, 59, 999999)

#: A range within a day: [start, end); `end` of `None` means midnight at the end of the day.
Range = tuple[time, time | None]


def _parse_clock(text: str, where: str) -> time | None:
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a time like 09:00") from None
    if (hours, minutes) == (24, 0):
        return None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ConfigError(f"{where}: {text!r} is not a time between 00:00 and 24:00")
    return time(hours, minutes)


def _parse_range(text: str, where: str) -> Range:
    start_text, sep, end_text = str(text).partition("-")
    if not sep:
        raise ConfigError(f'{where}: {text!r} is not a range like "09:00-17:30"')
    start = _parse_clock(start_text, where)
    end = _parse_clock(end_text, where)
    if start is None or (end is not None and end <= start):
        raise ConfigError(f"{where}: {text!r} must end after it starts")
    return (start, end)


def _parse_days(key: str) -> list[int]:
    first, sep, last = key.strip().lower().partition("-")
    if first not in DAY_NAMES or (sep and last not in DAY_NAMES):
        raise ConfigError(
            f"opening_hours: {key!r} is not a day or day range; use {', '.join(DAY_NAMES)} or e.g. mon-fri"
        )
    start = DAY_NAMES.index(first)
    end = DAY_NAMES.index(last) if sep else start
    if end < start:
        raise ConfigError(f"opening_hours: {key!r} must go forwards (e.g. mon-fri)")
    return list(range(start, end + 1))


@dataclass(frozen=True)
class OpeningHours:
    """When operators answer. `always_open` when nothing is configured."""

    timezone: str = "UTC"
    #: weekday (0 = Monday) → ranges, sorted by start.
    weekly: Mapping[int, tuple[Range, ...]] = field(default_factory=dict)
    closed_dates: frozenset[date] = frozenset()
    always_open: bool = True

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> OpeningHours:
        """Build from the `opening_hours` mapping of the config file (None: always open)."""
        if not raw:
            return cls()
        raw = dict(raw)
        timezone = str(raw.pop("timezone", "UTC"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"opening_hours.timezone: unknown time zone {timezone!r}; use an IANA name like Europe/London"
            ) from None
        closed: set[date] = set()
        for item in raw.pop("closed_dates", None) or []:
            try:
                closed.add(item if isinstance(item, date) else date.fromisoformat(str(item)))
            except ValueError:
                raise ConfigError(
                    f"opening_hours.closed_dates: {item!r} is not a date like 2025-12-25"
                ) from None
        weekly: dict[int, list[Range]] = {}
        for key, value in raw.items():
            texts = [value] if isinstance(value, str) else list(value or [])
            for day in _parse_days(str(key)):
                for text in texts:
                    if str(text).strip().lower() == "closed":
                        continue
                    weekly.setdefault(day, []).append(
                        _parse_range(str(text), f"opening_hours.{key}")
                    )
        return cls(
            timezone=timezone,
            weekly={day: tuple(sorted(ranges)) for day, ranges in weekly.items()},
            closed_dates=frozenset(closed),
            always_open=False,
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _ranges_on(self, day: date) -> tuple[Range, ...]:
        if day in self.closed_dates:
            return ()
        return tuple(self.weekly.get(day.weekday(), ()))

    def is_open(self, now: datetime) -> bool:
        """Whether operators answer at `now` (an aware datetime)."""
        if self.always_open:
            return True
        local = now.astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        return any(
            start <= clock and (end is None or clock < end)
            for start, end in self._ranges_on(local.date())
        )

    def next_opening(self, now: datetime) -> datetime | None:
        """The next moment (aware, in the team's time zone) operators start answering.

        `now` itself when open; `None` when no day in the coming year has opening hours.
        """
        if self.is_open(now):
            return now.astimezone(self.zone)
        local = now.astimezone(self.zone)
        for offset in range(0, 367):
            day = local.date() + timedelta(days=offset)
            for start, _end in self._ranges_on(day):
                candidate = datetime.combine(day, start, tzinfo=self.zone)
                if candidate > local:
                    return candidate
        return None

    def describe(self) -> str:
        """Human-readable week, e.g. `Mon–Fri 09:00–17:30, Sat 10:00–14:00 (Europe/London)`."""
        if self.always_open:
            return "around the clock"
        groups: list[tuple[int, int, tuple[Range, ...]]] = []
        for day in range(7):
            ranges = tuple(self.weekly.get(day, ()))
            if groups and groups[-1][2] == ranges and groups[-1][1] == day - 1:
                groups[-1] = (groups[-1][0], day, ranges)
            else:
                groups.append((day, day, ranges))
        parts = []
        for first, last, ranges in groups:
            if not ranges:
                continue
            days = _DISPLAY[first] if first == last else f"{_DISPLAY[first]}–{_DISPLAY[last]}"
            spans = ", ".join(
                f"{start:%H:%M}–{'24:00' if end is None else format(end, '%H:%M')}"
                for start, end in ranges
            )
            parts.append(f"{days} {spans}")
        return f"{'; '.join(parts) or 'closed'} ({self.timezone})"


def describe_moment(moment: datetime, now: datetime) -> str:
    """Say when `moment` is, relative to `now`: `today at 09:00`, `tomorrow at 09:00`,
    `on Monday at 09:00`, or `on 2 January at 09:00` further ahead (times in `moment`'s zone)."""
    local_now = now.astimezone(moment.tzinfo)
    days = (moment.date() - local_now.date()).days
    clock = f"{moment:%H:%M}"
    if days <= 0:
        return f"today at {clock}"
    if days == 1:
        return f"tomorrow at {clock}"
    if days < 7:
        return f"on {moment:%A} at {clock}"
    return f"on {moment.day} {moment:%B} at {clock}"
