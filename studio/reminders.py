"""Gentle reminders: why one is due, how long after what, and when a user may be written to at all.

A reminder at 3 a.m. is worse than none, so nothing is sent between 22:00 and 09:00 in the time zone
the user's language usually means: Russian speakers are mostly in Moscow time; English speakers are
spread over every zone, and UTC is the documented compromise (its 09:00–22:00 covers the European
day and the American morning). A reminder due at night is not dropped: it waits for the morning.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class ReminderCause(StrEnum):
    UNPAID_ORDER = "unpaid_order"  # reference: the order id
    IDLE_CREDITS = "idle_credits"  # reference: the id of the ledger entry that last changed the balance
    ORIGINALS_EXPIRING = "originals_expiring"  # reference: the job id


# An order is reminded of once it has waited this long for its payment ...
UNPAID_AFTER = timedelta(hours=1)
# ... and no longer once it is this old: a reminder of yesterday's order reads like a dunning letter.
UNPAID_UNTIL = timedelta(days=1)
# Credits on a balance and no pack started (nor credits moved) for this long.
IDLE_CREDITS_AFTER = timedelta(days=3)
# A pack's originals are announced this long before retention deletes them.
EXPIRY_NOTICE = timedelta(days=7)
# Whatever the causes, a user hears from us at most once this often: the others wait their turn
# (an unpaid order first, then the originals, then the credits).
REMINDER_GAP = timedelta(days=1)

QUIET_FROM = time(22, 0)
QUIET_UNTIL = time(9, 0)

LANGUAGE_TIME_ZONES: dict[str, str] = {"ru": "Europe/Moscow", "en": "UTC"}
DEFAULT_TIME_ZONE = "UTC"


def time_zone_of(language: str | None) -> ZoneInfo:
    """The usual time zone of ``language`` (a Telegram language code such as "ru" or "en-GB")."""
    base = (language or "").split("-")[0].lower()
    return ZoneInfo(LANGUAGE_TIME_ZONES.get(base, DEFAULT_TIME_ZONE))


def is_quiet(now: datetime, language: str | None) -> bool:
    """Whether ``now`` (aware, any zone) falls in the night of the user's usual time zone."""
    local = now.astimezone(time_zone_of(language)).time()
    return local >= QUIET_FROM or local < QUIET_UNTIL


def days_left(deleted_at: datetime, now: datetime) -> int:
    """Whole days until ``deleted_at`` as a person counts them: 6 days 3 hours is "7 days", never 0."""
    seconds = (deleted_at - now).total_seconds()
    return max(1, -int(-seconds // 86400))
