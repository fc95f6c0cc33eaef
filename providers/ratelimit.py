"""Create-budget limiters: at most ``max_calls`` admissions in ANY window of ``period_seconds``.

Why not aiolimiter: its leaky bucket admits a full burst and then keeps admitting at the drain
rate, so ``AsyncLimiter(20, 10)`` lets a burst of 20 through and a 21st request 0.5 s later —
21 requests inside one 10 s window. Kie.ai answers exactly that with 429 and *drops* the
request (kie.md §7). A sliding log never lets the (max_calls + 1)-th admission happen before
the oldest admission has left the window; ``tests/integration/test_ratelimit.py`` measures both.

The safety margin widens the window a little, so network jitter between our admission and the
request's arrival at the provider (or clock skew between processes) cannot squeeze an extra request
into the provider's window. It is a share of the window, not a fixed time: a fixed 250 ms cost a
real 10 s window 2.4 % of its budget but the load bench's compressed 0.5 s window a third. Calls
made through ``admit()`` count from their answer, which no network delay can precede.

``room()`` lets a caller claim work only when it can be admitted at once (the engine picks the task
at that moment, so a new payer's first portrait never queues behind work claimed earlier), and
``restore()`` refills an in-process window from the creates the database recorded before a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable

import redis.asyncio as redis_asyncio

from providers.base import Room

# Jitter between our admission and the provider (event-loop lag, a new connection: measured over
# 50 ms at 1,000 packs) is covered by ``admit()`` counting a call's slot from its answer. The margin
# only has to cover the provider timing a request a little later than its answer reaches us: 1 %
# of the window (100 ms of Kie's real 10 s) leaves 99 % of any window usable.
DEFAULT_SAFETY_MARGIN_SHARE = 0.01


def default_margin(period_seconds: float) -> float:
    return period_seconds * DEFAULT_SAFETY_MARGIN_SHARE


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
        safety_margin_seconds: float | None = None,
    ) -> None:
        margin = default_margin(period_seconds) if safety_margin_seconds is None else safety_margin_seconds
        _validate(max_calls, period_seconds, margin)
        self.max_calls = max_calls
        self.period_seconds = period_seconds
        self.safety_margin_seconds = margin
        self._window_seconds = period_seconds + margin
        # When each finished call left (monotonic, ascending: entries are only ever appended "now").
        self._admitted_at: deque[float] = deque()
        self._in_flight = 0  # admitted through ``admit()`` and not answered yet: they hold a slot
        self._answered = asyncio.Event()
        # asyncio.Lock hands itself to waiters in arrival order and does not let a newcomer
        # barge past queued waiters, so holding it while sleeping gives FIFO admission.
        self._turnstile = asyncio.Lock()
        self._waiting = 0

    def _expire(self, now: float) -> None:
        while self._admitted_at and now - self._admitted_at[0] >= self._window_seconds:
            self._admitted_at.popleft()

    def _taken(self) -> int:
        return len(self._admitted_at) + self._in_flight

    async def _wait_for_slot(self) -> None:
        self._waiting += 1
        try:
            async with self._turnstile:
                while True:
                    now = time.monotonic()
                    self._expire(now)
                    if self._taken() < self.max_calls:
                        return
                    # Until the oldest finished call leaves the window, or a call in flight is
                    # answered (its slot then counts from that moment); re-check either way.
                    timeout = self._admitted_at[0] + self._window_seconds - now if self._admitted_at else None
                    self._answered.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._answered.wait(), timeout)
        finally:
            self._waiting -= 1

    async def acquire(self) -> None:
        """Admission counted from now (for callers that cannot say when their call was answered)."""
        await self._wait_for_slot()
        self._admitted_at.append(time.monotonic())

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Admission for one call whose slot counts from when it is *answered*: the provider saw
        it no later than that, so no delay between here and the provider (event-loop lag, a new
        TLS connection) can ever put one call too many into the provider's window."""
        await self._wait_for_slot()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._admitted_at.append(time.monotonic())
            self._answered.set()

    async def room(self) -> Room:
        now = time.monotonic()
        self._expire(now)
        free = self.max_calls - self._taken() - self._waiting
        if free > 0:
            return Room(free, 0.0)
        # Full (or promised to waiters): the earliest a finished call frees a slot for us.
        if not self._admitted_at:
            return Room(0, self._window_seconds / 20)  # all in flight: look again shortly
        index = min(len(self._admitted_at) - 1, max(0, -free))
        return Room(0, max(0.0, self._admitted_at[index] + self._window_seconds - now))

    def restore(self, admitted_wall_times: Iterable[float]) -> None:
        """Refill the window from calls made before a restart (wall-clock seconds), so the first
        creates after it do not exceed the provider's budget of the busy window before."""
        offset = time.monotonic() - time.time()
        restored = [moment + offset for moment in admitted_wall_times]
        self._admitted_at = deque(sorted([*restored, *self._admitted_at]))
        self._expire(time.monotonic())


# KEYS[1] = sorted set of admissions (score = Redis server time in microseconds)
# ARGV[1] = max_calls, ARGV[2] = window in microseconds, ARGV[3] = unique member,
# ARGV[4] = how long an admission in flight holds its slot before its answer re-stamps it (µs).
# Returns 0 when admitted, else the microseconds until the oldest admission leaves the window.
# Redis TIME makes every process agree on one clock; Redis >= 5 replicates script effects, so
# calling TIME before writing is allowed.
_SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local max_calls = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local member = ARGV[3]
local hold_us = tonumber(ARGV[4])
local server_time = redis.call('TIME')
local now_us = tonumber(server_time[1]) * 1000000 + tonumber(server_time[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_us - window_us)
if redis.call('ZCARD', key) < max_calls then
  redis.call('ZADD', key, now_us + hold_us, member)
  redis.call('PEXPIRE', key, math.ceil((window_us + hold_us) / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait_us = tonumber(oldest[2]) + window_us - now_us
if wait_us < 1 then
  wait_us = 1
end
return wait_us
"""

# An answered call: its slot counts from now. KEYS[1] as above; ARGV[1] = member,
# ARGV[2] = window in microseconds.
_ANSWERED_LUA = """
local server_time = redis.call('TIME')
local now_us = tonumber(server_time[1]) * 1000000 + tonumber(server_time[2])
redis.call('ZADD', KEYS[1], 'XX', now_us, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 1000)
return 0
"""

# A call in flight holds its slot this long at most (longer than any provider call's timeout);
# a process killed mid-call frees the slot after that.
IN_FLIGHT_HOLD_SECONDS = 120.0


# The same window, read only: ARGV[1] = max_calls, ARGV[2] = window in microseconds.
# Returns {free slots, microseconds until the oldest admission leaves the window (0 when free)}.
_ROOM_LUA = """
local key = KEYS[1]
local max_calls = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local server_time = redis.call('TIME')
local now_us = tonumber(server_time[1]) * 1000000 + tonumber(server_time[2])
local count = redis.call('ZCOUNT', key, now_us - window_us + 1, '+inf')
if count < max_calls then
  return {max_calls - count, 0}
end
local oldest = redis.call('ZRANGEBYSCORE', key, now_us - window_us + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local wait_us = tonumber(oldest[2]) + window_us - now_us
if wait_us < 1 then
  wait_us = 1
end
return {0, wait_us}
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
        safety_margin_seconds: float | None = None,
    ) -> None:
        margin = default_margin(period_seconds) if safety_margin_seconds is None else safety_margin_seconds
        _validate(max_calls, period_seconds, margin)
        self.key = key
        self.max_calls = max_calls
        self.period_seconds = period_seconds
        self.safety_margin_seconds = margin
        self._window_microseconds = round((period_seconds + margin) * 1_000_000)
        self._redis = redis
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)
        self._room_script = redis.register_script(_ROOM_LUA)
        self._answered_script = redis.register_script(_ANSWERED_LUA)
        self._waiting = 0
        self._turnstile = asyncio.Lock()
        # Members must be unique per acquisition (two admissions in the same microsecond must
        # not collapse into one sorted-set entry): a per-instance prefix plus a counter.
        self._member_prefix = uuid.uuid4().hex
        self._member_counter = itertools.count()

    async def try_acquire(self, member: str | None = None, hold_seconds: float = 0.0) -> float:
        """One atomic attempt: 0.0 when admitted, else the seconds until a slot frees."""
        member = member or self._new_member()
        wait_microseconds = await self._script(
            keys=[self.key],
            args=[self.max_calls, self._window_microseconds, member, round(hold_seconds * 1_000_000)],
        )
        return int(wait_microseconds) / 1_000_000

    def _new_member(self) -> str:
        return f"{self._member_prefix}:{next(self._member_counter)}"

    async def _admit_member(self, member: str, hold_seconds: float) -> None:
        self._waiting += 1
        try:
            async with self._turnstile:
                while True:
                    wait_seconds = await self.try_acquire(member, hold_seconds)
                    if wait_seconds <= 0:
                        return
                    # A slot held by a call in flight frees when it is answered, not at its
                    # hold's end: look again at least a few times per window.
                    await asyncio.sleep(min(wait_seconds, self.period_seconds / 20))
        finally:
            self._waiting -= 1

    async def acquire(self) -> None:
        await self._admit_member(self._new_member(), 0.0)

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """As ``SlidingWindowLimiter.admit``: the slot counts from the call's answer."""
        member = self._new_member()
        await self._admit_member(member, IN_FLIGHT_HOLD_SECONDS)
        try:
            yield
        finally:
            await self._answered_script(keys=[self.key], args=[member, self._window_microseconds])

    async def room(self) -> Room:
        free, wait_microseconds = await self._room_script(
            keys=[self.key], args=[self.max_calls, self._window_microseconds]
        )
        free = int(free) - self._waiting  # this process's own waiters come first
        return Room(free, 0.0) if free > 0 else Room(0, int(wait_microseconds) / 1_000_000)

    def restore(self, admitted_wall_times: Iterable[float]) -> None:
        """Nothing to do: the shared window lives in Redis and outlives this process."""
