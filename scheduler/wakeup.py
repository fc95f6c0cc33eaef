"""The one way event-driven work wakes a clocked job: `WakeableJob`.

Background work that an event can trigger (dispatch on payment, submit when a task is due, poll when
a result is due, deliver on store) is an ordinary APScheduler interval job — the interval is its
backstop tick — and an event runs it now, or at a given moment, through APScheduler's own API
(`Job.modify(next_run_time=...)`).

APScheduler drops a run that would exceed `max_instances` ("maximum number of running instances
reached"), so a wake that arrives while the job is running is remembered here instead: a wake for
now makes the current run go round once more, a wake for later is applied once the run is over and
APScheduler has counted it finished. No event is lost, and bursts of events coalesce into one pass.
A tick that falls due during a long pass (a burst of creates paced by the provider's budget) is
dropped by APScheduler — the pass at work covers it; the process's logging quiets that warning
(``bot/logging_setup.py``). A second instance that returned at once instead measured slower from
payment to first create in the load bench (p50 0.4–0.9 s against 0.2–0.5 s), so there is one.

A job's owner may `stop()` it: the pass in flight is cancelled and awaited, and no pass starts
again, so a stopping process need not wait for a long pass (a create waiting for its rate window).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.job import Job
from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler

log = logging.getLogger(__name__)


class WakeableJob:
    def __init__(
        self,
        job_id: str,
        work: Callable[[], Awaitable[object]],
        interval_seconds: float,
        *,
        run_at_start: bool = True,
        wait_for_wake: bool = False,
    ) -> None:
        self.job_id = job_id
        self.interval_seconds = interval_seconds
        self._work = work
        self._run_at_start = run_at_start
        self._wait_for_wake = wait_for_wake
        self._scheduler: BaseScheduler | None = None
        self._job: Job | None = None
        self._pass: asyncio.Task[object] | None = None  # the scheduler's task running a pass, if any
        self._woken = False
        self._wake_at: datetime | None = None  # the earliest later run asked for during a pass
        self._stopped = False
        self.runs = 0

    @property
    def _running(self) -> bool:
        return self._pass is not None

    def register(self, scheduler: BaseScheduler) -> None:
        """Add the job (interval = backstop tick); a scheduler holds one job per id.

        ``wait_for_wake``: added paused, so neither a tick nor the start runs it before its owner is
        ready; the first wake starts it, and its interval from there."""
        self._scheduler = scheduler
        first_run: dict[str, datetime | None] = {}
        if self._wait_for_wake:
            first_run = {"next_run_time": None}
        elif self._run_at_start:
            first_run = {"next_run_time": datetime.now(UTC)}
        # Otherwise next_run_time is left out: the first tick comes one interval on.
        self._job = scheduler.add_job(
            self._run,
            "interval",
            seconds=self.interval_seconds,
            id=self.job_id,
            name=self.job_id,
            **first_run,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    def wake(self) -> None:
        """Run the job as soon as possible; safe to call from any coroutine, any number of times."""
        if self._stopped:
            return
        self._woken = True
        if self._running:
            return  # the running pass sees the flag and goes round once more
        self._move_next_run(datetime.now(UTC))

    def wake_at(self, when: datetime) -> None:
        """Run the job at ``when`` (timezone-aware) unless it runs earlier anyway: its next run only
        ever moves earlier, and the interval tick resumes from the run it brings."""
        if self._stopped:
            return
        if when <= datetime.now(UTC):
            self.wake()
        elif self._running:
            if self._wake_at is None or when < self._wake_at:
                self._wake_at = when
        else:
            self._move_next_run(when)

    async def stop(self) -> None:
        """No pass starts again; the one in flight is cancelled and awaited."""
        self._stopped = True
        running = self._pass
        if running is not None and running is not asyncio.current_task():
            running.cancel()
            await asyncio.wait({running})

    def _move_next_run(self, when: datetime) -> None:
        scheduler, job = self._scheduler, self._job
        if scheduler is None or job is None or scheduler.state != STATE_RUNNING:
            return  # not started yet: the first run picks the work up
        # The memory job store holds this very Job, its next_run_time kept current by the scheduler.
        if job.next_run_time is not None and job.next_run_time <= when:
            return
        try:
            job.modify(next_run_time=when)
        except LookupError:  # removed during shutdown
            pass

    async def _run(self) -> None:
        if self._stopped or self._running:
            return  # a run that was due when stop() came
        task = asyncio.current_task()
        assert task is not None
        self._pass = task
        try:
            while True:
                self._woken = False
                self.runs += 1
                try:
                    await self._work()
                except asyncio.CancelledError:
                    if self._stopped:
                        return  # our own stop(): a normal end, not an error for APScheduler to log
                    raise
                except Exception:
                    # The next wake or tick retries; one failing pass must not end the job.
                    log.exception("background job %s failed", self.job_id)
                    return
                if self._wake_at is not None and self._wake_at <= datetime.now(UTC):
                    self._wake_at = None
                    self._woken = True
                if not self._woken:
                    return
        finally:
            self._pass = None
            # Applied once APScheduler has counted this run finished (its executor's done callback
            # comes first), so the run a wake brings is never dropped as one instance too many.
            task.add_done_callback(self._after_pass)

    def _after_pass(self, _task: object) -> None:
        wake_at, self._wake_at = self._wake_at, None
        if self._stopped or self._running:
            return
        if self._woken:  # came in the finally window above
            self._move_next_run(datetime.now(UTC))
        elif wake_at is not None:
            self._move_next_run(wake_at)
