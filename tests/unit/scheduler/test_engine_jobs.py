"""The engine's background work is four WakeableJobs on the process's one scheduler: paused until the
engine starts, then run by events (a queued job, a pending task, a due poll) long before their ticks,
and stopped with the engine. In-memory provider, SQLite file, no HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from providers.fake import FakeImageProvider
from scheduler.engine import EngineConfig, GenerationEngine
from scheduler.notify import RecordingNotifier
from scheduler.signals import WorkSignals
from storage.db import create_engine, create_sessionmaker
from storage.files import LocalFileStore
from storage.models import utcnow
from studio.catalogue import load_catalogue
from studio.policy import FallbackPolicy
from tests.engine_support import seed_paid_job

HOUR = 3600.0


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.002)


async def test_events_drive_the_engine_jobs_between_start_and_stop(sqlite_url: str, tmp_path: Path) -> None:
    db = create_engine(sqlite_url)
    sessionmaker = create_sessionmaker(db)
    files = LocalFileStore(tmp_path / "files")
    kie = FakeImageProvider("kie")
    signals = WorkSignals()
    # Every tick an hour away: whatever runs below, an event ran.
    config = EngineConfig(worker_id="unit", tick_seconds=HOUR, poll_interval_seconds=HOUR, lease_seconds=3 * HOUR)
    engine = GenerationEngine(
        sessionmaker,
        files=files,
        catalogue=load_catalogue(),
        providers=[kie],
        policy=FallbackPolicy(),
        signals=signals,
        notifier=RecordingNotifier(),
        config=config,
    )
    scheduler = AsyncIOScheduler(timezone="UTC")
    for job in engine.jobs():
        job.register(scheduler)
    scheduler.start()
    try:
        assert {job.job_id for job in engine.jobs()} == {
            "engine-dispatch",
            "engine-submit",
            "engine-poll",
            "engine-leases",
        }
        signals.job_queued()  # before start: no work yet (the admins' overrides come first)
        await asyncio.sleep(0.05)
        assert all(scheduler.get_job(job.job_id).next_run_time is None for job in engine.jobs())
        assert engine.dispatch_job.runs == 0

        engine.start()  # every job runs once, then on events and its interval
        await _until(lambda: all(job.runs >= 1 and not job._running for job in engine.jobs()))

        await seed_paid_job(sessionmaker, files, engine.catalogue, telegram_id=7, pack="p7", selfies=2)
        began = time.monotonic()
        signals.job_queued()  # payment → dispatch → task_pending → submit → create
        await _until(lambda: len(kie.creates) >= 1)
        assert time.monotonic() - began < 2.0

        # The recorded create's first poll moved the hourly poll job to it; an earlier one moves it again,
        # a later one never moves it back.
        poll = scheduler.get_job("engine-poll")
        await _until(lambda: poll.next_run_time < utcnow() + timedelta(seconds=HOUR / 2))
        await _until(lambda: not engine.poll_job._running)
        first = poll.next_run_time
        earlier = utcnow() + timedelta(seconds=0.5)
        engine.state.poll_due_by(earlier)
        assert poll.next_run_time == min(first, earlier)
        engine.state.poll_due_by(earlier + timedelta(seconds=60))
        assert poll.next_run_time == min(first, earlier)
        polled = engine.poll_job.runs
        await _until(lambda: engine.poll_job.runs > polled)

        await engine.stop()
        runs = engine.dispatch_job.runs
        signals.job_queued()
        await asyncio.sleep(0.05)
        assert engine.dispatch_job.runs == runs  # stopped: no pass starts again
    finally:
        scheduler.shutdown(wait=False)
        await engine.stop()
        await db.dispose()
