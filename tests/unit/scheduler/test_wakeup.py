"""WakeableJob: an event runs the clocked job now or at a moment, a wake during a run is never lost,
and a stopped job runs no more."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.wakeup import WakeableJob


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def _counting() -> tuple[list[int], Callable[[], Awaitable[None]]]:
    """A job's work that only counts its passes, and the count."""
    passes: list[int] = []

    async def work() -> None:
        passes.append(1)

    return passes, work


def _first_pass_held() -> tuple[list[int], Callable[[], Awaitable[None]], asyncio.Event]:
    """A job's work that counts its passes and holds the first until the event is set."""
    passes: list[int] = []
    release = asyncio.Event()

    async def work() -> None:
        passes.append(1)
        if len(passes) == 1:
            await release.wait()

    return passes, work, release


@contextlib.asynccontextmanager
async def _scheduled(job: WakeableJob) -> AsyncIterator[AsyncIOScheduler]:
    """The job on a started scheduler, shut down when the block ends."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    job.register(scheduler)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


async def test_wake_runs_the_job_long_before_its_tick() -> None:
    passes, work = _counting()
    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    async with _scheduled(job):
        await asyncio.sleep(0.05)
        assert passes == []
        job.wake()
        await _until(lambda: len(passes) == 1)


async def test_a_job_not_run_at_start_still_ticks_without_a_wake() -> None:
    passes, work = _counting()
    job = WakeableJob("work", work, interval_seconds=0.2, run_at_start=False)
    async with _scheduled(job):
        await _until(lambda: len(passes) >= 2)  # the backstop tick, with nobody calling wake()


async def test_a_wake_during_a_run_makes_exactly_one_more_pass() -> None:
    started, work, release = _first_pass_held()
    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    async with _scheduled(job):
        job.wake()
        await _until(lambda: len(started) == 1)
        for _ in range(5):  # a burst of events while the first pass runs
            job.wake()
        release.set()
        await _until(lambda: len(started) == 2)
        await asyncio.sleep(0.1)
        assert len(started) == 2


async def test_a_failing_pass_is_logged_and_the_job_stays_wakeable(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    job = WakeableJob("flaky", work, interval_seconds=3600, run_at_start=True)
    async with _scheduled(job):
        await _until(lambda: len(calls) == 1)
        await _until(lambda: not job._running)
        job.wake()
        await _until(lambda: len(calls) == 2)
    assert "background job flaky failed" in caplog.text


async def test_wake_at_moves_the_next_run_earlier_and_the_tick_resumes_from_there() -> None:
    runs: list[datetime] = []

    async def work() -> None:
        runs.append(datetime.now(UTC))

    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    async with _scheduled(job) as scheduler:
        asked = datetime.now(UTC) + timedelta(seconds=0.15)
        job.wake_at(asked)
        await _until(lambda: len(runs) == 1)
        assert asked <= runs[0] < asked + timedelta(seconds=5)  # at the moment asked for, not the hour's tick
        await _until(lambda: not job._running)
        backstop = scheduler.get_job("work").next_run_time
        assert backstop - runs[0] > timedelta(seconds=3590)  # the interval counts on from the woken run


async def test_wake_at_never_moves_the_next_run_later() -> None:
    runs, work = _counting()
    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    async with _scheduled(job):
        job.wake_at(datetime.now(UTC) + timedelta(seconds=0.1))
        job.wake_at(datetime.now(UTC) + timedelta(seconds=600))  # later: ignored
        await _until(lambda: len(runs) == 1)
        job.wake_at(datetime.now(UTC) - timedelta(seconds=1))  # past: now
        await _until(lambda: len(runs) == 2)


async def test_wake_at_during_a_run_is_applied_after_it_and_a_due_one_goes_round_at_once() -> None:
    release = asyncio.Event()
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def work() -> None:
        runs.append(loop.time())
        if len(runs) == 1:
            await release.wait()

    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    async with _scheduled(job):
        job.wake()
        await _until(lambda: len(runs) == 1)
        job.wake_at(datetime.now(UTC) + timedelta(seconds=0.3))
        job.wake_at(datetime.now(UTC) + timedelta(seconds=0.2))  # the earliest counts
        release.set()
        ended = loop.time()
        await _until(lambda: len(runs) == 2)
        assert 0.1 <= runs[1] - ended < 5  # not dropped as one instance too many, nor left to the tick
        # Asked for a moment that has come by the end of the pass: the pass goes round once more.
        release.clear()
        job.wake()
        await _until(lambda: len(runs) == 3)
        job.wake_at(datetime.now(UTC) + timedelta(seconds=0.01))
        await asyncio.sleep(0.05)
        release.set()
        await _until(lambda: len(runs) == 4)


async def test_a_job_waiting_for_a_wake_neither_runs_at_start_nor_ticks_before_it() -> None:
    runs, work = _counting()
    job = WakeableJob("work", work, interval_seconds=0.05, wait_for_wake=True)
    async with _scheduled(job):
        await asyncio.sleep(0.2)
        assert runs == []
        job.wake()
        await _until(lambda: len(runs) >= 3)  # started by the wake, then on its interval


async def test_stop_cancels_the_pass_in_flight_quietly_and_nothing_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def work() -> None:
        started.append(1)
        try:
            await asyncio.sleep(3600)  # a create waiting for its rate window
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    job = WakeableJob("work", work, interval_seconds=0.05, run_at_start=True)
    async with _scheduled(job):
        await _until(lambda: len(started) == 1)
        async with asyncio.timeout(1):
            await job.stop()
        assert cancelled == [1] and not job._running
        job.wake()
        job.wake_at(datetime.now(UTC))
        await asyncio.sleep(0.2)  # several ticks
        assert started == [1]
    assert "raised an exception" not in caplog.text and "failed" not in caplog.text


async def test_ticks_during_a_long_pass_run_no_pass_beside_it() -> None:
    passes, work, release = _first_pass_held()
    job = WakeableJob("long", work, interval_seconds=0.05, run_at_start=True)
    async with _scheduled(job):
        await _until(lambda: len(passes) == 1)
        await asyncio.sleep(0.3)  # about six ticks fall due meanwhile
        assert passes == [1]
        release.set()
        await _until(lambda: len(passes) >= 2)  # and the job ticks on
