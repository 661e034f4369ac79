"""Triggers: next time of day in a zone, repeats, missed starts not made up."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from labctl.interfaces.errors import ConfigError
from labctl.runner.triggers import Trigger, parse_time_of_day, parse_zone

T0 = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC).timestamp()  # Sunday 20:00 UTC


def test_time_of_day_later_today_or_tomorrow() -> None:
    at22 = Trigger(at=dt.time(22, 0))
    assert at22.first_s(T0) == T0 + 2 * 3600
    at06 = Trigger(at=dt.time(6, 0))
    assert at06.first_s(T0) == T0 + 10 * 3600  # tomorrow 06:00
    assert Trigger(at=dt.time(20, 0)).first_s(T0) == T0  # now counts as due
    assert Trigger().first_s(T0) == T0  # no time of day: at once


def test_time_of_day_is_read_in_the_zone() -> None:
    vienna = ZoneInfo("Europe/Vienna")  # UTC+1 in December: 22:00 local = 21:00 UTC
    assert Trigger(at=dt.time(22, 0), zone=vienna).first_s(T0) == T0 + 3600


def test_repeats_and_missed_starts() -> None:
    every = Trigger(at=dt.time(22, 0), every_s=12 * 3600)
    first = every.first_s(T0)
    assert every.next_s(first, first) == first + 12 * 3600
    # A run that went on for 30 h: the starts it covered are skipped, not run back to back.
    assert every.next_s(first, first + 30 * 3600) == first + 36 * 3600
    assert Trigger(at=dt.time(22, 0)).next_s(first, first) is None


@pytest.mark.parametrize("text", ["24:00", "7", "22:60", "noon"])
def test_bad_time_of_day_names_the_field(text: str) -> None:
    with pytest.raises(ConfigError, match="time of day") as caught:
        parse_time_of_day(text, "schedule.runs[0].at")
    assert caught.value.field == "schedule.runs[0].at"


def test_bad_zone_and_interval() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        parse_zone("Mars/Olympus", "schedule.timezone")
    with pytest.raises(ConfigError, match="every must be > 0"):
        Trigger(every_s=0.0)
    assert parse_time_of_day("6:05", "x") == dt.time(6, 5)
