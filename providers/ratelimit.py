"""Create-budget limiters: at most ``max_calls`` admissions in ANY window of ``period_seconds``.

Why not aiolimiter: its leaky bucket admits a full burst and then keeps admitting at the drain
rate, so ``AsyncLimiter(20, 10)`` lets a burst of 20 through and a 21st request 0.5 s later —
21 requests inside one 10 s window. Kie.ai answers exactly that with 429 and *drops* the
request (kie.md §7). A sliding log never lets the (max_calls + 1)-th admission happen before
the oldest admission has left the window; ``tests/integration/test_ratelimit.py`` measures both.

``safety_margin_seconds`` widens the window a little, so network jitter between our admission
and the request's arrival at the provider (or clock skew between processes) cannot squeeze an
extra request into the provider's window.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import deque

import redis.asyncio as redis_asyncio

# Measured (bench/load.py, 1,000 packs in one process): event-loop lag between admission and the
# request reaching the provider exceeded 50 ms and let 2-4 creates over the limit; 250 ms did not.
# Against a 10 s window it still leaves 97.6 % of the budget usable.
DEFAULT_SAFETY_MARGIN_SECONDS = 0.25


def _validate(max_calls: int, period_seconds: float, safety_margin_seconds: float) -> None:
    if max_calls < 1:
        raise ValueError(f"max_calls must be >= 1, got {max_calls}")
    if period_seconds <= 0:
        raise ValueError(f"period_seconds must be > 0, got {period_seconds}")
    if safety_margin_seconds < 0:
        raise ValueError(f"safety_margin_seconds must be >= 0, got {safety_margin_seconds}")


class SlidingWindowLimiter:
    """In-process sliding-log limiter with FIFO admission of concurrent waiters."""

    def __init__(
        self,
        max_calls: int,
        period_seconds: float,
        *,
        safety_margin_seconds: float = DEFAULT_SAFETY_MARGIN_SECONDS,
    ) -> None:
        _validate(max_calls, period_seconds, safety_margin_seconds)
        self.max_calls = max_calls
        self.period_seconds = period_seconds
        self.safety_margin_seconds = safety_margin_seconds
        self._window_seconds = period_seconds + safety_margin_seconds
        self._admitted_at: deque[float] = deque()
        # asyncio.Lock hands itself to waiters in arrival order and does not let a newcomer
        # barge past queued waiters, so holding it while sleeping gives FIFO admission.
        self._turnstile = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._turnstile:
            while True:
                now = time.monotonic()
                while self._admitted_at and now - self._admitted_at[0] >= self._window_seconds:
                    self._admitted_at.popleft()
                if len(self._admitted_at) < self.max_calls:
                    self._admitted_at.append(now)
                    return
                # Sleep exactly until the oldest admission leaves the window, then re-check
                # (the loop also covers timers that fire a hair early).
                await asyncio.sleep(self._admitted_at[0] + self._window_seconds - now)


# KEYS[1] = sorted set of admissions (score = Redis server time in microseconds)
# ARGV[1] = max_calls, ARGV[2] = window in microseconds, ARGV[3] = unique member
# Returns 0 when admitted, else the microseconds until the oldest admission leaves the window.
# Redis TIME makes every process agree on one clock; Redis >= 5 replicates script effects, so
# calling TIME before writing is allowed.
_SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local max_calls = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local member = ARGV[3]
local server_time = redis.call('TIME')
local now_us = tonumber(server_time[1]) * 1000000 + tonumber(server_time[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_us - window_us)
if redis.call('ZCARD', key) < max_calls then
  redis.call('ZADD', key, now_us, member)
  redis.call('PEXPIRE', key, math.ceil(window_us / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait_us = tonumber(oldest[2]) + window_us - now_us
if wait_us < 1 then
  wait_us = 1
end
return wait_us
"""


class RedisSlidingWindowLimiter:
    """The same guarantee shared by every process that uses the same Redis ``key``.

    Admission is one atomic Lua script over a sorted set; when the window is full the script
    returns how long to wait. Within one process waiters are FIFO (a local lock, which also
    keeps one poller per process instead of a thundering herd); across processes the order is
    whoever asks first after a slot frees, but the budget is never exceeded.
    """

    def __init__(
        self,
        redis: redis_asyncio.Redis,
        key: str,
        max_calls: int,
        period_seconds: float,
        *,
        safety_margin_seconds: float = DEFAULT_SAFETY_MARGIN_SECONDS,
    ) -> None:
        _validate(max_calls, period_seconds, safety_margin_seconds)
        self.key = key
        self.max_calls = max_calls
        self.period_seconds = period_seconds
        self.safety_margin_seconds = safety_margin_seconds
        self._window_microseconds = round((period_seconds + safety_margin_seconds) * 1_000_000)
        self._redis = redis
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)
        self._turnstile = asyncio.Lock()
        # Members must be unique per acquisition (two admissions in the same microsecond must
        # not collapse into one sorted-set entry): a per-instance prefix plus a counter.
        self._member_prefix = uuid.uuid4().hex
        self._member_counter = itertools.count()

    async def try_acquire(self) -> float:
        """One atomic attempt: 0.0 when admitted, else the seconds until a slot frees."""
        member = f"{self._member_prefix}:{next(self._member_counter)}"
        wait_microseconds = await self._script(
            keys=[self.key], args=[self.max_calls, self._window_microseconds, member]
        )
        return int(wait_microseconds) / 1_000_000

    async def acquire(self) -> None:
        async with self._turnstile:
            while True:
                wait_seconds = await self.try_acquire()
                if wait_seconds <= 0:
                    return
                await asyncio.sleep(wait_seconds)
