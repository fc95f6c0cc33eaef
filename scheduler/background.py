"""`BackgroundTasks`: fire-and-forget coroutines that are kept, logged and stopped together.

asyncio keeps only weak references to tasks, so a task nobody holds can vanish mid-flight; an
exception in one nobody awaits is reported only at garbage collection. Engine, delivery, broadcast
and originals all start such work, and all need the same three things: hold a reference until it is
done, log what it raised, and cancel and await everything at shutdown. An optional key makes a task
single-flight (one resend per job, one originals run per job, one broadcast per id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Hashable
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED, JobEvent
from apscheduler.schedulers.base import BaseScheduler

log = logging.getLogger(__name__)


class KeyedLocks:
    """One asyncio lock per key, dropped when its last user leaves (a lock per key kept for ever would
    grow with every job or task this process has seen)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}  # (lock, its users)

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class BackgroundTasks:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keyed: dict[Hashable, asyncio.Task[Any]] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: Hashable) -> bool:
        return key in self._keyed

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], *, key: Hashable | None = None, name: str | None = None
    ) -> bool:
        """Start `coroutine`; False (and the coroutine closed unstarted) when stopping or `key` is running."""
        if self._closed or (key is not None and key in self._keyed):
            coroutine.close()
            return False
        task = asyncio.create_task(coroutine, name=name or f"{self.name}-{key if key is not None else 'task'}")
        self._tasks.add(task)
        if key is not None:
            self._keyed[key] = task
        task.add_done_callback(lambda done: self._finished(done, key))
        return True

    def _finished(self, task: asyncio.Task[Any], key: Hashable | None) -> None:
        self._tasks.discard(task)
        if key is not None and self._keyed.get(key) is task:
            del self._keyed[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def wait_any(self) -> None:
        """Return once any running task is done (at once when none runs): a bound on work in flight
        waits here for room. By then the finished task is no longer counted in ``len``."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    async def wait(self, key: Hashable) -> None:
        task = self._keyed.get(key)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel everything still running and wait for it; nothing new starts afterwards."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RunningJobs:
    """APScheduler jobs in flight, counted through its public events, so a stop can let them finish.

    ``shutdown(wait=False)`` cancels a coroutine job mid-call (a reconcile waiting on Telegram, say),
    and APScheduler logs that cancellation as a job that raised, traceback and all.
    """

    def __init__(self, scheduler: BaseScheduler) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        scheduler.add_listener(self._submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _submitted(self, _event: JobEvent) -> None:
        self._running += 1
        self._idle.clear()

    def _finished(self, _event: JobEvent) -> None:
        self._running = max(0, self._running - 1)
        if self._running == 0:
            self._idle.set()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """True when every job finished within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
