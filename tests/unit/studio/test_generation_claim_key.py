"""The claim key: the queue's order of pending tasks as one sortable string."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from studio.generation import CLAIM_KEY_LENGTH, MAX_PRIORITY, claim_key, is_first_portrait_key

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def test_higher_priority_goes_first_even_for_later_portraits_of_newer_jobs() -> None:
    paid_late = claim_key(100, T0 + timedelta(hours=1), 50, 7)
    free_first = claim_key(0, T0, 1, 0)
    assert paid_late < free_first


def test_a_jobs_first_portrait_goes_before_later_portraits_of_older_jobs() -> None:
    older_second = claim_key(100, T0, 1, 1)
    newer_first = claim_key(100, T0 + timedelta(minutes=5), 2, 0)
    assert newer_first < older_second


@pytest.mark.parametrize("priority", [0, 100, MAX_PRIORITY])
def test_a_key_tells_a_jobs_first_portrait_from_its_later_ones(priority: int) -> None:
    assert is_first_portrait_key(claim_key(priority, T0, 12, 0))
    assert not is_first_portrait_key(claim_key(priority, T0, 12, 1))
    assert not is_first_portrait_key(claim_key(priority, T0, 10, 10))


def test_first_portraits_go_oldest_job_first() -> None:
    assert claim_key(100, T0, 9, 0) < claim_key(100, T0 + timedelta(microseconds=1), 3, 0)


def test_later_portraits_go_oldest_job_first_then_by_position() -> None:
    keys = [
        claim_key(100, T0, 1, 1),
        claim_key(100, T0, 1, 2),
        claim_key(100, T0, 1, 22),
        claim_key(100, T0 + timedelta(seconds=1), 2, 1),
    ]
    assert keys == sorted(keys)


def test_job_id_breaks_ties_between_jobs_created_in_the_same_microsecond() -> None:
    assert claim_key(100, T0, 4, 3) < claim_key(100, T0, 5, 1)


def test_key_matches_the_documented_tuple_order() -> None:
    """Sorting by the key is sorting by (-priority, position > 0, created_at, job_id, position)."""
    rng = random.Random(15)
    rows = [
        (
            rng.choice([0, 100, 7]),
            T0 + timedelta(microseconds=rng.randrange(10**8)),
            rng.randrange(1, 10**6),
            rng.randrange(0, 30),
        )
        for _ in range(2000)
    ]
    by_key = sorted(rows, key=lambda r: claim_key(*r))
    by_tuple = sorted(rows, key=lambda r: (-r[0], r[3] > 0, r[1], r[2], r[3]))
    assert by_key == by_tuple


def test_key_is_fixed_width_digits_in_utc() -> None:
    key = claim_key(100, T0, 7, 3)
    assert key == "999899" + "1" + "20261206120000000000" + "0000000007" + "00003"
    assert len(key) == CLAIM_KEY_LENGTH and key.isdigit()
    moscow = T0.astimezone(timezone(timedelta(hours=3)))
    assert claim_key(100, moscow, 7, 3) == key
    extremes = [
        claim_key(0, datetime(1, 1, 1, tzinfo=UTC), 0, 0),
        claim_key(MAX_PRIORITY, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**31 - 1, 99999),
    ]
    assert all(len(k) == CLAIM_KEY_LENGTH and k.isdigit() for k in extremes)


@pytest.mark.parametrize(
    ("priority", "created_at", "job_id", "position"),
    [
        (-1, T0, 1, 0),
        (MAX_PRIORITY + 1, T0, 1, 0),
        (0, T0, -1, 0),
        (0, T0, 10**10, 0),
        (0, T0, 1, -1),
        (0, T0, 1, 10**5),
        (0, T0.replace(tzinfo=None), 1, 0),
    ],
)
def test_key_refuses_what_would_not_sort(priority: int, created_at: datetime, job_id: int, position: int) -> None:
    with pytest.raises(ValueError):
        claim_key(priority, created_at, job_id, position)


@pytest.mark.parametrize(
    ("priority", "created_at", "job_id", "position", "message"),
    [
        (-1, T0, 1, 0, "priority must be within 0..999999, got -1"),
        (0, T0, 10**10, 0, "job id out of range: 10000000000"),
        (0, T0, 1, 10**5, "position out of range: 100000"),
        (0, T0.replace(tzinfo=None), 1, 0, "naive datetime given; use aware UTC datetimes"),
    ],
)
def test_a_refused_key_says_which_part_is_out_of_range(
    priority: int, created_at: datetime, job_id: int, position: int, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        claim_key(priority, created_at, job_id, position)


def test_the_key_is_utc_whatever_the_machines_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers on machines in different zones share one queue: the key's time must not follow the local zone."""
    moscow = T0.astimezone(timezone(timedelta(hours=3)))
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert claim_key(100, moscow, 7, 3)[7:27] == "20261206120000000000"
    finally:
        monkeypatch.undo()
        time.tzset()
