"""Recent provider latency: the window, its percentiles, and the fallback when too little is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studio.latency import LatencyEstimate, LatencyTracker, LatencyWindow, quantile

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_quantile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert quantile(values, 0.10) == 2.0
    assert quantile(values, 0.95) == 19.0
    assert quantile(values, 1.0) == 20.0
    assert quantile([7.0], 0.1) == 7.0
    assert quantile(reversed(values), 0.5) == 10.0
    with pytest.raises(ValueError):
        quantile([], 0.5)
    with pytest.raises(ValueError):
        quantile(values, 0)


def test_too_few_samples_give_no_estimate() -> None:
    tracker = LatencyTracker(min_samples=5)
    for index in range(4):
        tracker.observe("kie", "nano-banana-2", at(index), 20.0)
    assert tracker.estimate("kie", "nano-banana-2", at(10)) is None
    tracker.observe("kie", "nano-banana-2", at(5), 20.0)
    assert tracker.estimate("kie", "nano-banana-2", at(10)) == LatencyEstimate(20.0, 20.0, 5)


def test_low_and_high_percentiles_per_provider_and_model() -> None:
    tracker = LatencyTracker(min_samples=5)
    for index, seconds in enumerate(range(1, 101)):  # 1..100 s
        tracker.observe("kie", "nano-banana-2", at(index), float(seconds))
        tracker.observe("kie", "seedream/4.5-edit", at(index), float(seconds) * 2)
    estimate = tracker.estimate("kie", "nano-banana-2", at(200))
    assert estimate is not None
    assert (estimate.low_seconds, estimate.high_seconds, estimate.samples) == (10.0, 95.0, 100)
    other = tracker.estimate("kie", "seedream/4.5-edit", at(200))
    assert other is not None and other.high_seconds == 190.0
    assert tracker.estimate("replicate", None, at(200)) is None


def test_the_window_is_bounded_by_count() -> None:
    tracker = LatencyTracker(max_samples=10, min_samples=5)
    for index in range(10):
        tracker.observe("kie", None, at(index), 100.0)
    for index in range(10, 20):
        tracker.observe("kie", None, at(index), 5.0)  # the provider got fast
    estimate = tracker.estimate("kie", None, at(30))
    assert estimate is not None and estimate.high_seconds == 5.0 and estimate.samples == 10


def test_the_window_forgets_old_samples() -> None:
    tracker = LatencyTracker(max_age_seconds=600, min_samples=3)
    for index in range(5):
        tracker.observe("kie", None, at(index), 30.0)
    assert tracker.estimate("kie", None, at(100)) is not None
    assert tracker.estimate("kie", None, at(700)) is None  # all older than ten minutes


def test_a_late_seed_keeps_the_window_in_time_order() -> None:
    window = LatencyWindow(max_samples=3, max_age_seconds=3600)
    window.add(at(100), 1.0)
    window.add(at(50), 2.0)  # read from the database after a live sample arrived
    window.add(at(10), 3.0)
    window.add(at(200), 4.0)  # the oldest (at 10) leaves first
    assert list(window.samples) == [(at(50), 2.0), (at(100), 1.0), (at(200), 4.0)]


def test_nonsense_samples_are_ignored() -> None:
    window = LatencyWindow()
    window.add(at(0), -1.0)  # clocks of two processes disagree
    window.add(at(0), float("nan"))
    assert not window.samples


def test_bad_tracker_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LatencyTracker(min_samples=0)
    with pytest.raises(ValueError):
        LatencyTracker(low_quantile=0.9, high_quantile=0.5)
    with pytest.raises(ValueError):
        LatencyEstimate(low_seconds=5.0, high_seconds=1.0, samples=3)
