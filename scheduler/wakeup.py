"""The one way event-driven work wakes a clocked job: `WakeableJob`.

Background work that an event can trigger (dispatch on payment, submit when a task is due, deliver on
store) is an ordinary APScheduler interval job — the interval is its backstop tick — and an event
runs it now through APScheduler's own API (`Job.modify(next_run_time=now)`). APScheduler drops a run
that would exceed `max_instances` ("maximum number of running instances reached"), so a wake that
arrives while the job is running is remembered here and the current run goes round once more
instead: no event is lost, and bursts of events coalesce into one extra pass.
"""

from __future__ import annotations

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
    ) -> None:
        self.job_id = job_id
        self.interval_seconds = interval_seconds
        self._work = work
        self._run_at_start = run_at_start
        self._scheduler: BaseScheduler | None = None
        self._job: Job | None = None
        self._running = False
        self._woken = False
        self.runs = 0

    def register(self, scheduler: BaseScheduler) -> None:
        """Add the job (interval = backstop tick); a scheduler holds one job per id."""
        self._scheduler = scheduler
        # next_run_time=None would add the job paused (no tick until a wake): leave it out instead.
        first_run = {"next_run_time": datetime.now(UTC)} if self._run_at_start else {}
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
        self._woken = True
        if self._running:
            return  # the running pass sees the flag and goes round once more
        scheduler, job = self._scheduler, self._job
        if scheduler is None or job is None or scheduler.state != STATE_RUNNING:
            return  # not started yet: the first run picks the work up
        try:
            job.modify(next_run_time=datetime.now(UTC))
        except LookupError:  # removed during shutdown
            pass

    async def _run(self) -> None:
        self._running = True
        try:
            while True:
                self._woken = False
                self.runs += 1
                try:
                    await self._work()
                except Exception:
                    # The next wake or tick retries; one failing pass must not end the job.
                    log.exception("background job %s failed", self.job_id)
                    return
                if not self._woken:
                    return
        finally:
            self._running = False
            job = self._job
            if self._scheduler is not None and self._scheduler.state == STATE_RUNNING and job is not None:
                try:
                    # A wake that came in the finally window above still gets its run.
                    if self._woken:
                        job.modify(next_run_time=datetime.now(UTC))
                except LookupError:
                    pass
