"""The pace of creates: no faster on average than the provider's budget, in bursts of a quarter second.

Why pace at all when the sliding-window limiter already keeps the budget: let through in bursts, a
pack's creates fill the window at once and leave it together, and a payer who comes in between waits
for the whole window (Kie: 10 s; a real-time bench run measured payment → first create at 9.4 s
p50). Paced, a slot frees every ``1 / rate`` seconds and the queue's order gives it to the newest
payer's first portrait, while the window stays as full as before.

Why not aiolimiter: its ``has_capacity`` says yes or no but not when, and a pacer that sleeps a whole
interval after a "no" falls behind the very rate it paces. This is GCRA (the "virtual scheduling"
form of a token bucket): one number, the theoretical arrival time, gives both the answer and the
exact wait. Clocks are passed in (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

BURST_SECONDS = 0.25


@dataclass(frozen=True)
class Paced:
    """Creates that may start now (``allowed``), else the seconds until the next may (``wait``)."""

    allowed: int
    wait: float


class CreatePace:
    def __init__(self, max_calls: int, period_seconds: float, *, burst_seconds: float = BURST_SECONDS) -> None:
        if max_calls < 1 or period_seconds <= 0 or burst_seconds < 0:
            raise ValueError("a pace needs max_calls >= 1, period_seconds > 0 and burst_seconds >= 0")
        self.interval = period_seconds / max_calls
        self.burst = max(1, int(burst_seconds / self.interval))  # creates that may go at once
        self._tolerance = (self.burst - 1) * self.interval
        self._theoretical_arrival = float("-inf")

    def room(self, now: float, wanted: int) -> Paced:
        """How many of ``wanted`` creates may start at ``now`` (taking nothing)."""
        start = max(self._theoretical_arrival, now)
        allowed = 0
        while allowed < wanted and start + allowed * self.interval - self._tolerance <= now:
            allowed += 1
        if allowed:
            return Paced(allowed, 0.0)
        return Paced(0, start - self._tolerance - now)

    def take(self, now: float, creates: int) -> None:
        """Count ``creates`` started at ``now`` (even beyond the room: they did start)."""
        self._theoretical_arrival = max(self._theoretical_arrival, now) + creates * self.interval
