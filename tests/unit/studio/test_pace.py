"""The create pace: the budget's average rate, a quarter second's burst, and the exact wait."""

from __future__ import annotations

import pytest

from studio.pace import CreatePace, Paced


def test_kie_budget_paces_one_create_every_half_second() -> None:
    pace = CreatePace(20, 10.0)
    assert (pace.interval, pace.burst) == (0.5, 1)
    assert pace.room(100.0, 5) == Paced(1, 0.0)
    pace.take(100.0, 1)
    assert pace.room(100.0, 5) == Paced(0, 0.5)
    assert pace.room(100.3, 5) == Paced(0, pytest.approx(0.2))
    assert pace.room(100.5, 5) == Paced(1, 0.0)


def test_a_fast_budget_lets_a_quarter_second_burst_through_then_paces() -> None:
    pace = CreatePace(40, 1.0)  # the load bench's compressed window: 0.025 s apart, bursts of 10
    assert pace.burst == 10
    assert pace.room(0.0, 25).allowed == 10
    pace.take(0.0, 10)
    assert pace.room(0.0, 25) == Paced(0, pytest.approx(0.025))
    assert pace.room(0.1, 25).allowed == 4  # 0.1 s drained four slots


def test_over_any_stretch_the_pace_never_exceeds_the_budget() -> None:
    pace = CreatePace(20, 10.0, burst_seconds=2.0)  # a burst of 4
    now, started = 0.0, []
    while now < 60.0:
        room = pace.room(now, 100)
        if room.allowed:
            pace.take(now, room.allowed)
            started += [now] * room.allowed
        now += room.wait if not room.allowed else 0.01
    for first in started:
        in_window = [t for t in started if first <= t < first + 10.0]
        assert len(in_window) <= 20 + pace.burst - 1
    assert len(started) >= 20 * 6  # and keeps up with the budget: 120 in 60 s


def test_an_idle_pace_does_not_save_up_more_than_its_burst() -> None:
    pace = CreatePace(20, 10.0)
    pace.take(0.0, 1)
    assert pace.room(3600.0, 10).allowed == 1


def test_creates_taken_beyond_the_room_push_the_next_one_back() -> None:
    pace = CreatePace(20, 10.0)
    pace.take(0.0, 3)
    assert pace.room(0.0, 1) == Paced(0, 1.5)


def test_the_room_never_exceeds_what_was_asked_for() -> None:
    assert CreatePace(40, 1.0).room(0.0, 3) == Paced(3, 0.0)  # a burst of 10 is there, 3 were wanted


def test_the_smallest_budgets_still_pace() -> None:
    one = CreatePace(1, 10.0)
    assert (one.interval, one.burst, one.room(0.0, 5)) == (10.0, 1, Paced(1, 0.0))
    no_burst = CreatePace(40, 1.0, burst_seconds=0)
    assert no_burst.burst == 1 and no_burst.room(0.0, 5) == Paced(1, 0.0)


@pytest.mark.parametrize(("max_calls", "period", "burst"), [(0, 10.0, 0.25), (20, 0.0, 0.25), (20, 10.0, -1.0)])
def test_a_pace_refuses_a_budget_that_is_not_one(max_calls: int, period: float, burst: float) -> None:
    message = "^a pace needs max_calls >= 1, period_seconds > 0 and burst_seconds >= 0$"
    with pytest.raises(ValueError, match=message):
        CreatePace(max_calls, period, burst_seconds=burst)
