"""When a scheduled run starts: at a wall-clock time of day, every so often, or both.

A trigger maps the clock's now (``Clock.now_s()``: Unix seconds on the wall clock; on a
virtual clock whatever epoch the simulation started at, so a test that starts its
VirtualClock at a chosen Unix time sees the same times of day as the lab) to the next
start time. Times of day are read in the schedule's time zone (default: the machine's),
so ``22:00`` stays 22:00 local across daylight-saving changes.

Why not APScheduler: its schedulers sleep on the real clock, so the virtual clock of the
tests and simulations could not drive them; the trigger arithmetic needed here (next time
of day, fixed interval) is a few lines on the Clock interface, which works on both.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labctl.interfaces.errors import ConfigError

_TIME_OF_DAY = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?\s*$")


def parse_time_of_day(text: str, where: str) -> dt.time:
    """``"22:00"`` or ``"06:30:15"`` -> a time (ConfigError naming ``where`` when unreadable)."""
    match = _TIME_OF_DAY.match(str(text))
    if match is None:
        raise ConfigError(f"cannot read {text!r} as a time of day (HH:MM)", field=where)
    hour, minute, second = match.groups()
    return dt.time(int(hour), int(minute), int(second or 0))


def parse_zone(name: str | None, where: str) -> dt.tzinfo:
    """An IANA zone (``Europe/Vienna``, ``UTC``); None = the machine's local zone."""
    if name is None:
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r} (e.g. UTC, Europe/Vienna)", field=where
        ) from None


@dataclass(frozen=True, slots=True)
class Trigger:
    """Start at the next ``at`` time of day (None: at once), then every ``every_s`` (None: once).

    ``count`` limits how many starts it makes (None: no limit).
    """

    at: dt.time | None = None
    every_s: float | None = None
    zone: dt.tzinfo = dt.UTC
    count: int | None = None

    def __post_init__(self) -> None:
        if self.every_s is not None and not (math.isfinite(self.every_s) and self.every_s > 0):
            raise ConfigError(f"every must be > 0 s, got {self.every_s}", field="every")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}", field="count")

    def first_s(self, now_s: float) -> float:
        """The first start at or after ``now_s``."""
        if self.at is None:
            return now_s
        now = dt.datetime.fromtimestamp(now_s, self.zone)
        # Wall time of day in the zone: combine the local date with the time, then convert.
        for days in range(0, 3):
            day = now.date() + dt.timedelta(days=days)
            candidate = dt.datetime.combine(day, self.at, tzinfo=self.zone)
            if candidate.timestamp() >= now_s:
                return candidate.timestamp()
        raise AssertionError("a time of day recurs within two days")  # pragma: no cover

    def next_s(self, previous_s: float, now_s: float) -> float | None:
        """The start after ``previous_s`` (None: no more). A start missed while another run
        went on is not made up: the next one is the first period boundary at or after now."""
        if self.every_s is None:
            return None
        periods = max(1, math.ceil((now_s - previous_s) / self.every_s))
        return previous_s + periods * self.every_s
