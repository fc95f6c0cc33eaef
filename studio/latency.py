"""Recent provider latency: submit → done durations per provider and model, and their percentiles.

The poll schedule follows these numbers (``studio.policy.next_poll_at``): without callbacks the first
poll comes near a low percentile, with callbacks the backstop waits beyond the high one. The window
is bounded in count and in age, so a provider that speeds up or slows down is followed within
minutes, and a sample from before a long pause is not trusted.

Pure rules: every method takes the current time as an argument and never reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

LOW_QUANTILE = 0.10  # the first poll without callbacks aims near here
HIGH_QUANTILE = 0.95  # the callback backstop waits beyond here
DEFAULT_MAX_SAMPLES = 200
DEFAULT_MAX_AGE_SECONDS = 3600.0
DEFAULT_MIN_SAMPLES = 8  # fewer: the policy's static guess is used instead


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    """What recent tasks of one provider and model took, submit → done, in seconds."""

    low_seconds: float
    high_seconds: float
    samples: int

    def __post_init__(self) -> None:
        if not 0 <= self.low_seconds <= self.high_seconds:
            raise ValueError(f"need 0 <= low <= high, got {self.low_seconds} and {self.high_seconds}")
        if self.samples < 1:
            raise ValueError("an estimate needs at least one sample")


def quantile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1): a value that was actually observed."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(slots=True)
class LatencyWindow:
    """The most recent samples of one provider and model, oldest first."""

    max_samples: int = DEFAULT_MAX_SAMPLES
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    samples: deque[tuple[datetime, float]] = field(default_factory=deque)

    def add(self, done_at: datetime, seconds: float) -> None:
        if seconds < 0 or not math.isfinite(seconds):
            return  # clock skew between processes; never a reason to poll earlier
        if not self.samples or done_at >= self.samples[-1][0]:
            self.samples.append((done_at, seconds))
        else:  # a seed from the database arriving after live samples: keep the order by time
            ordered = sorted([*self.samples, (done_at, seconds)], key=lambda sample: sample[0])
            self.samples = deque(ordered)
        while len(self.samples) > self.max_samples:
            self.samples.popleft()

    def recent(self, now: datetime) -> list[float]:
        oldest = now - timedelta(seconds=self.max_age_seconds)
        while self.samples and self.samples[0][0] < oldest:
            self.samples.popleft()
        return [seconds for _, seconds in self.samples]


@dataclass(slots=True)
class LatencyTracker:
    """Recent latency per (provider, model); ``estimate`` is None until there are enough samples."""

    max_samples: int = DEFAULT_MAX_SAMPLES
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    min_samples: int = DEFAULT_MIN_SAMPLES
    low_quantile: float = LOW_QUANTILE
    high_quantile: float = HIGH_QUANTILE
    windows: dict[tuple[str, str], LatencyWindow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_samples < 1 or self.min_samples < 1 or self.min_samples > self.max_samples:
            raise ValueError("need 1 <= min_samples <= max_samples")
        if self.max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive")
        if not 0 < self.low_quantile <= self.high_quantile <= 1:
            raise ValueError("need 0 < low_quantile <= high_quantile <= 1")

    def observe(self, provider: str, model: str | None, done_at: datetime, seconds: float) -> None:
        key = (provider, model or "")
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = LatencyWindow(self.max_samples, self.max_age_seconds)
        window.add(done_at, seconds)

    def estimate(self, provider: str, model: str | None, now: datetime) -> LatencyEstimate | None:
        window = self.windows.get((provider, model or ""))
        values = window.recent(now) if window is not None else []
        if len(values) < self.min_samples:
            return None
        return LatencyEstimate(
            low_seconds=quantile(values, self.low_quantile),
            high_seconds=quantile(values, self.high_quantile),
            samples=len(values),
        )
