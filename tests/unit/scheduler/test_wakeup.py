"""WakeableJob: an event runs the clocked job now, and a wake during a run is never lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.wakeup import WakeableJob


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def test_wake_runs_the_job_long_before_its_tick() -> None:
    passes: list[int] = []

    async def work() -> None:
        passes.append(1)

    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    scheduler = AsyncIOScheduler(timezone="UTC")
    job.register(scheduler)
    scheduler.start()
    try:
        await asyncio.sleep(0.05)
        assert passes == []
        job.wake()
        await _until(lambda: len(passes) == 1)
    finally:
        scheduler.shutdown(wait=False)


async def test_a_job_not_run_at_start_still_ticks_without_a_wake() -> None:
    passes: list[int] = []

    async def work() -> None:
        passes.append(1)

    job = WakeableJob("work", work, interval_seconds=0.2, run_at_start=False)
    scheduler = AsyncIOScheduler(timezone="UTC")
    job.register(scheduler)
    scheduler.start()
    try:
        await _until(lambda: len(passes) >= 2)  # the backstop tick, with nobody calling wake()
    finally:
        scheduler.shutdown(wait=False)


async def test_a_wake_during_a_run_makes_exactly_one_more_pass() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def work() -> None:
        started.append(1)
        if len(started) == 1:
            await release.wait()

    job = WakeableJob("work", work, interval_seconds=3600, run_at_start=False)
    scheduler = AsyncIOScheduler(timezone="UTC")
    job.register(scheduler)
    scheduler.start()
    try:
        job.wake()
        await _until(lambda: len(started) == 1)
        for _ in range(5):  # a burst of events while the first pass runs
            job.wake()
        release.set()
        await _until(lambda: len(started) == 2)
        await asyncio.sleep(0.1)
        assert len(started) == 2
    finally:
        scheduler.shutdown(wait=False)


async def test_a_failing_pass_is_logged_and_the_job_stays_wakeable(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    job = WakeableJob("flaky", work, interval_seconds=3600, run_at_start=True)
    scheduler = AsyncIOScheduler(timezone="UTC")
    job.register(scheduler)
    scheduler.start()
    try:
        await _until(lambda: len(calls) == 1)
        await _until(lambda: not job._running)
        job.wake()
        await _until(lambda: len(calls) == 2)
    finally:
        scheduler.shutdown(wait=False)
    assert "background job flaky failed" in caplog.text
