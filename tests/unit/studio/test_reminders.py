"""The quiet-hours rule of reminders: never between 22:00 and 09:00 in the user's language's usual
time zone (Moscow for Russian, UTC for English and anything unknown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studio.reminders import days_left, is_quiet, time_zone_of


def utc(hour: int, minute: int = 0, day: int = 8) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_languages_map_to_their_usual_time_zones() -> None:
    assert str(time_zone_of("ru")) == "Europe/Moscow"
    assert str(time_zone_of("RU")) == "Europe/Moscow"
    assert str(time_zone_of("en")) == "UTC"
    assert str(time_zone_of("en-GB")) == "UTC"  # a regional code counts as its language
    assert str(time_zone_of("de")) == "UTC"  # not offered: the documented default
    assert str(time_zone_of(None)) == "UTC"


@pytest.mark.parametrize(
    ("when", "quiet"),
    [
        (utc(5, 59), True),  # 08:59 in Moscow (UTC+3)
        (utc(6, 0), False),  # 09:00: the day starts
        (utc(18, 59), False),  # 21:59
        (utc(19, 0), True),  # 22:00: the night starts
        (utc(23, 30), True),  # 02:30
    ],
)
def test_russian_nights_are_moscow_nights(when: datetime, quiet: bool) -> None:
    assert is_quiet(when, "ru") is quiet


@pytest.mark.parametrize(
    ("when", "quiet"), [(utc(8, 59), True), (utc(9, 0), False), (utc(21, 59), False), (utc(22, 0), True)]
)
def test_english_nights_are_utc_nights(when: datetime, quiet: bool) -> None:
    assert is_quiet(when, "en") is quiet


def test_the_same_moment_can_be_night_for_one_and_day_for_the_other() -> None:
    assert is_quiet(utc(20), "ru") and not is_quiet(utc(20), "en")  # 23:00 in Moscow, 20:00 UTC
    assert is_quiet(utc(7), "en") and not is_quiet(utc(7), "ru")  # 07:00 UTC, 10:00 in Moscow


def test_days_left_count_as_people_count_them() -> None:
    now = utc(12)
    assert days_left(now + timedelta(days=7), now) == 7
    assert days_left(now + timedelta(days=6, hours=3), now) == 7
    assert days_left(now + timedelta(hours=2), now) == 1  # never "in 0 days"
    assert days_left(now - timedelta(hours=1), now) == 1
