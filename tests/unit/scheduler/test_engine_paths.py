"""The engine's submit, result, likeness and failure paths, on an in-memory provider, the in-process face
checker and a SQLite file.

No HTTP and no loops: each test calls one round of the engine's work (dispatch, submit, a callback,
a poll) and then waits for what that round started in the background. The database is migrated once
per session and copied for each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from providers.base import RateLimitedError, RetryableProviderError
from providers.fake import FakeImageProvider
from scheduler.background import BackgroundTasks
from scheduler.engine import EngineConfig, GenerationEngine
from scheduler.notices import JobFailed, SelfiesMissing
from scheduler.notify import RecordingNotifier
from scheduler.signals import WorkSignals
from storage import ledger, transitions
from storage.db import create_engine, create_sessionmaker
from storage.events import EventName
from storage.files import LocalFileStore
from storage.models import Event, GenerationTask, ReferencePhoto, utcnow
from studio.catalogue import load_catalogue
from studio.faces import FakeFaceChecker
from studio.policy import CircuitBreaker, FallbackPolicy
from studio.states import JobStatus, TaskStatus
from tests.engine_support import job_row, seed_paid_job, task_statuses
from tests.image_corpus import selfie_like_jpeg

PACK = "p7"
PORTRAITS = 7


def _provider_policy(name: str, max_attempts: int, backoff: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "max_attempts": max_attempts,
        "backoff_seconds": backoff,
        "stuck_after_seconds": 600.0,
        "first_poll_after_seconds": 30.0,
        "poll_every_seconds": 10.0,
    }


# Kie twice (the retry a minute later), then Replicate once.
POLICY = FallbackPolicy.from_dict(
    {"providers": [_provider_policy("kie", 2, [60.0]), _provider_policy("replicate", 1, [])]}
)


@dataclass
class Rig:
    engine: GenerationEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    files: LocalFileStore
    kie: FakeImageProvider
    replicate: FakeImageProvider
    told: RecordingNotifier


@contextlib.asynccontextmanager
async def _rig(sqlite_url: str, tmp_path: Path, faces: FakeFaceChecker | None = None) -> AsyncIterator[Rig]:
    db: AsyncEngine = create_engine(sqlite_url)
    sessionmaker = create_sessionmaker(db)
    files = LocalFileStore(tmp_path / "files")
    kie, replicate = FakeImageProvider("kie"), FakeImageProvider("replicate")
    told = RecordingNotifier()
    engine = GenerationEngine(
        sessionmaker,
        files=files,
        catalogue=load_catalogue(),
        providers=[kie, replicate],
        policy=POLICY,
        signals=WorkSignals(),
        notifier=told,
        config=EngineConfig(worker_id="unit", public_url="https://bot.example"),
        faces=faces,
    )
    # Seven creates fail at once in some tests: the breaker would send the rest to Replicate early.
    engine.breakers["kie"] = CircuitBreaker(failure_threshold=100)
    try:
        yield Rig(engine, sessionmaker, files, kie, replicate, told)
    finally:
        await engine.stop()
        await db.dispose()


@pytest_asyncio.fixture
async def rig(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with _rig(sqlite_url, tmp_path) as built:
        yield built


@pytest_asyncio.fixture
async def faces() -> FakeFaceChecker:
    """The seeded job's two selfies show Anna."""
    checker = FakeFaceChecker()
    for index in range(2):
        checker.shows(selfie_like_jpeg(seed=index), "anna")
    return checker


@pytest_asyncio.fixture
async def checked_rig(sqlite_url: str, tmp_path: Path, faces: FakeFaceChecker) -> AsyncIterator[Rig]:
    """The engine scoring every portrait against the person's selfies."""
    async with _rig(sqlite_url, tmp_path, faces) as built:
        yield built


async def _drain(tasks: BackgroundTasks) -> None:
    while len(tasks):
        await tasks.wait_any()


async def _submit(rig: Rig) -> None:
    """Submit rounds until nothing due is left: the creates of each round finish before the next."""
    while await rig.engine.submit_due():
        await _drain(rig.engine.submitter.inflight)


async def _queued_job(rig: Rig) -> int:
    job_id = await seed_paid_job(
        rig.sessionmaker, rig.files, rig.engine.catalogue, telegram_id=4242, pack=PACK, selfies=2
    )
    assert await rig.engine.dispatch_jobs() == 1
    return job_id


async def _tasks(rig: Rig, job_id: int) -> list[GenerationTask]:
    async with rig.sessionmaker() as session:
        rows = await session.scalars(
            select(GenerationTask).where(GenerationTask.job_id == job_id).order_by(GenerationTask.position)
        )
        return list(rows)


async def _events(rig: Rig, name: EventName) -> int:
    async with rig.sessionmaker() as session:
        return int(await session.scalar(select(func.count(Event.id)).where(Event.name == name)) or 0)


async def _backoff_passes(rig: Rig, job_id: int) -> None:
    async with rig.sessionmaker() as session:
        await session.execute(
            update(GenerationTask)
            .where(GenerationTask.job_id == job_id, GenerationTask.status == TaskStatus.PENDING)
            .values(next_poll_at=utcnow())
        )
        await session.commit()


def _png(colour: tuple[int, int, int] = (200, 150, 120)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 64), colour).save(buffer, "PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------ submit


async def test_a_create_the_provider_answers_is_recorded_as_submitted_with_its_first_poll(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    await _submit(rig)

    tasks = await _tasks(rig, job_id)
    assert {task.status for task in tasks} == {TaskStatus.SUBMITTED}
    assert sorted(task.provider_task_id or "" for task in tasks) == sorted(c.task_id for c in rig.kie.creates)
    for task in tasks:
        assert task.provider == "kie" and task.attempts == 1 and task.claimed_by is None
        assert task.submitted_at is not None and task.next_poll_at is not None
        assert task.next_poll_at > task.submitted_at  # the backstop poll, not an immediate one
    assert len(rig.kie.uploads) == 2  # the two selfies, once per job rather than once per task
    assert len(rig.engine.submitter._upload_locks) == 0  # the job's upload lock went with its last create
    assert {c.callback_url for c in rig.kie.creates} == {"https://bot.example/providers/kie/callback"}
    assert await _events(rig, EventName.GENERATION_STARTED) == 1  # per job, not per task
    assert rig.replicate.creates == []


async def test_a_rate_limited_create_goes_back_to_pending_without_spending_an_attempt(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    rig.kie.create_errors = [RateLimitedError("429 too many requests", retry_after=30)]
    before = utcnow()
    assert await rig.engine.submit_due() == PORTRAITS
    await _drain(rig.engine.submitter.inflight)

    waiting = [task for task in await _tasks(rig, job_id) if task.status == TaskStatus.PENDING]
    assert len(waiting) == 1
    task = waiting[0]
    assert task.attempts == 0 and task.provider_index == 0 and task.claimed_by is None
    assert task.next_poll_at is not None and task.next_poll_at >= before + timedelta(seconds=30)
    assert "429" in (task.error or "")
    assert rig.engine.breaker_states()["kie"] == "closed" and rig.engine.breakers["kie"].failures == []
    assert await rig.engine.submit_due() == 0  # its window has not passed


async def test_a_retryable_create_error_spends_an_attempt_then_moves_to_the_fallback(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    rig.kie.fail_creates = RetryableProviderError("503 service unavailable", status=503)
    await _submit(rig)

    tasks = await _tasks(rig, job_id)
    assert {(task.status, task.provider_index, task.attempts) for task in tasks} == {(TaskStatus.PENDING, 0, 1)}
    assert rig.kie.failed_creates == PORTRAITS and rig.replicate.creates == []

    await _backoff_passes(rig, job_id)
    await _submit(rig)  # the second attempt on Kie fails too: the policy allows two there

    tasks = await _tasks(rig, job_id)
    assert {(task.status, task.provider, task.provider_index) for task in tasks} == {
        (TaskStatus.SUBMITTED, "replicate", 1)
    }
    assert rig.kie.failed_creates == 2 * PORTRAITS and len(rig.replicate.creates) == PORTRAITS
    assert all(task.attempts == 1 for task in tasks)  # attempts count per provider


async def test_a_job_whose_selfies_are_gone_fails_once_without_a_provider_call(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    async with rig.sessionmaker() as session:
        await session.execute(ReferencePhoto.__table__.delete())
        await session.commit()
    await _submit(rig)

    assert (await job_row(rig.sessionmaker, job_id)).status == JobStatus.FAILED
    assert rig.kie.creates == [] and rig.kie.failed_creates == 0 and rig.kie.uploads == []
    assert rig.told.notices == [SelfiesMissing(job_id, released=PORTRAITS)]
    assert rig.engine.breakers["kie"].failures == []


# ------------------------------------------------------------------ results


async def test_a_callback_for_an_unknown_task_is_404_and_calls_no_provider(rig: Rig) -> None:
    await _queued_job(rig)
    await _submit(rig)

    assert await rig.engine.accept_callback("kie", {}, FakeImageProvider.callback_body("kie-forged")) == 404
    assert await rig.engine.accept_callback("midjourney", {}, FakeImageProvider.callback_body("kie-1")) == 404
    assert await rig.engine.accept_callback("kie", {}, b"not json") == 400
    assert rig.kie.get_calls == []


async def test_a_succeeded_result_is_stored_once_even_if_it_arrives_twice(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    await _submit(rig)
    provider_task_id = rig.kie.creates[0].task_id
    rig.kie.succeed(provider_task_id, _png())
    body = FakeImageProvider.callback_body(provider_task_id)

    statuses = await asyncio.gather(
        rig.engine.accept_callback("kie", {}, body), rig.engine.accept_callback("kie", {}, body)
    )
    assert statuses == [200, 200]
    await _drain(rig.engine.state.background)
    fetched = len(rig.kie.get_calls)
    assert fetched == 1  # the repeat that came while the first was being handled was answered unfetched
    assert await rig.engine.accept_callback("kie", {}, body) == 200
    assert len(rig.kie.get_calls) == fetched  # a late duplicate of a settled task is not fetched

    [task] = [task for task in await _tasks(rig, job_id) if task.provider_task_id == provider_task_id]
    assert task.status == TaskStatus.STORED and task.result_key and task.thumb_key
    assert await rig.files.get(task.result_key) == _png()
    assert len(rig.kie.downloads) == 1
    assert await _events(rig, EventName.IMAGE_STORED) == 1
    assert rig.engine.breakers["kie"].failures == []


async def test_the_first_provider_report_wins_a_later_report_of_a_stored_portrait_stores_nothing(rig: Rig) -> None:
    """RECORD_RESULT moves only a submitted task. A poll that fetched the result just before the
    callback settled the task reaches handle_result after it (accept_callback's status check and
    the in-flight set are behind it then): only the conditional UPDATE stops a second download,
    a second stored image and a second image_stored event."""
    job_id = await _queued_job(rig)
    await _submit(rig)
    provider_task_id = rig.kie.creates[0].task_id
    result = rig.kie.succeed(provider_task_id, _png())
    assert await rig.engine.accept_callback("kie", {}, FakeImageProvider.callback_body(provider_task_id)) == 200
    await _drain(rig.engine.state.background)
    [stored] = [task for task in await _tasks(rig, job_id) if task.provider_task_id == provider_task_id]
    assert stored.status == TaskStatus.STORED

    await rig.engine.handle_result(rig.kie, result, polled=True)  # the poll's report of the same result
    await _drain(rig.engine.state.background)

    [task] = [task for task in await _tasks(rig, job_id) if task.provider_task_id == provider_task_id]
    assert task.status == TaskStatus.STORED
    assert (task.result_key, task.stored_at) == (stored.result_key, stored.stored_at)
    assert len(rig.kie.downloads) == 1
    assert await _events(rig, EventName.IMAGE_STORED) == 1
    assert await _events(rig, EventName.GENERATION_COMPLETED) == 1


async def test_the_first_provider_report_wins_a_late_report_of_a_delivered_portrait_does_not_send_it_again(
    rig: Rig,
) -> None:
    """A duplicate report that arrives after the portrait was sent (the user has it): the task stays
    delivered. Were RECORD_RESULT to move it back to succeeded, it would be stored again and, stored,
    planned into a second delivery."""
    job_id = await _queued_job(rig)
    await _submit(rig)
    provider_task_id = rig.kie.creates[0].task_id
    result = rig.kie.succeed(provider_task_id, _png())
    await rig.engine.handle_result(rig.kie, result)
    await _drain(rig.engine.state.background)
    [task] = [task for task in await _tasks(rig, job_id) if task.provider_task_id == provider_task_id]
    async with rig.sessionmaker() as session:  # as the delivery's confirm_chunk records a sent portrait
        assert await transitions.deliver_task(session, task.id, delivered_at=utcnow(), telegram_file_id="file-1")
        await session.commit()

    await rig.engine.handle_result(rig.kie, result, polled=True)
    await _drain(rig.engine.state.background)

    [after] = [task for task in await _tasks(rig, job_id) if task.provider_task_id == provider_task_id]
    assert after.status == TaskStatus.DELIVERED and after.telegram_file_id == "file-1"
    assert len(rig.kie.downloads) == 1
    assert await _events(rig, EventName.IMAGE_STORED) == 1


async def test_a_recovery_pass_finding_a_task_still_being_stored_starts_no_second_store(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    await _submit(rig)
    provider_task_id = rig.kie.creates[0].task_id
    result = rig.kie.succeed(provider_task_id, _png())
    await rig.engine.handle_result(rig.kie, result)  # starts the store in the background
    task = next(task for task in await _tasks(rig, job_id) if task.provider_task_id == provider_task_id)
    rig.engine.results.store_in_background(task.id, rig.kie, result.image_urls[0])
    assert len(rig.engine.state.background) == 1
    await _drain(rig.engine.state.background)
    assert len(rig.kie.downloads) == 1


async def test_a_poll_that_finds_a_task_done_stores_it(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    await _submit(rig)
    provider_task_id = rig.kie.creates[0].task_id
    rig.kie.succeed(provider_task_id, _png())
    async with rig.sessionmaker() as session:
        await session.execute(update(GenerationTask).values(next_poll_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    assert await rig.engine.poll_due() == PORTRAITS
    await _drain(rig.engine.state.background)

    statuses = await task_statuses(rig.sessionmaker, job_id)
    assert statuses == {TaskStatus.STORED: 1, TaskStatus.SUBMITTED: PORTRAITS - 1}
    assert sorted(rig.kie.get_calls) == sorted(c.task_id for c in rig.kie.creates)
    later = [task.next_poll_at for task in await _tasks(rig, job_id) if task.status == TaskStatus.SUBMITTED]
    assert all(moment is not None and moment > utcnow() for moment in later)  # asked again later, not now


# ------------------------------------------------------------------ failures


async def test_a_task_failed_for_good_is_credited_back_exactly_once(rig: Rig) -> None:
    job_id = await _queued_job(rig)
    await _submit(rig)
    for create in rig.kie.creates:
        rig.kie.fail(create.task_id, "content policy", retryable=False)  # not retried: straight to Replicate
    for create in rig.kie.creates:
        result = await rig.kie.get_task(create.task_id)
        await rig.engine.handle_result(rig.kie, result)
        await rig.engine.handle_result(rig.kie, result)  # the same failure reported twice (callback and poll)
    await _submit(rig)
    assert len(rig.replicate.creates) == PORTRAITS

    first, *rest = rig.replicate.creates
    failed = rig.replicate.fail(first.task_id, "still no", retryable=False)
    await rig.engine.handle_result(rig.replicate, failed)
    await rig.engine.handle_result(rig.replicate, failed)

    async with rig.sessionmaker() as session:
        assert await ledger.released_for_job(session, job_id) == 1
    assert await _events(rig, EventName.GENERATION_FAILED) == 1
    assert rig.told.notices == []  # six portraits may still come

    for create in rest:
        await rig.engine.handle_result(rig.replicate, rig.replicate.fail(create.task_id, "no", retryable=False))
    await rig.engine.hand_over_or_fail(job_id)  # a recover round settling again changes nothing

    assert (await job_row(rig.sessionmaker, job_id)).status == JobStatus.FAILED
    async with rig.sessionmaker() as session:
        assert await ledger.released_for_job(session, job_id) == PORTRAITS
    assert rig.told.notices == [JobFailed(job_id, returned=PORTRAITS)]


# ------------------------------------------------------------------ likeness


async def _portrait(rig: Rig, job_id: int, image: bytes) -> GenerationTask:
    """The job's first task comes back from Kie with ``image``; the task once its result was handled."""
    first = (await _tasks(rig, job_id))[0]
    assert first.provider == "kie" and first.provider_task_id is not None
    await rig.engine.handle_result(rig.kie, rig.kie.succeed(first.provider_task_id, image))
    await _drain(rig.engine.state.background)
    return next(task for task in await _tasks(rig, job_id) if task.id == first.id)


async def test_a_portrait_of_the_person_is_stored_with_its_likeness(checked_rig: Rig, faces: FakeFaceChecker) -> None:
    rig = checked_rig
    faces.shows(_png(), "anna")
    job_id = await _queued_job(rig)
    await _submit(rig)

    task = await _portrait(rig, job_id, _png())

    assert task.status == TaskStatus.STORED
    assert (task.identity_score, task.flagged, task.identity_redos) == (1.0, False, 0)
    async with rig.sessionmaker() as session:
        kept = await session.scalars(select(ReferencePhoto.face_embedding))
        assert all(blob is not None for blob in kept)  # the selfies' faces are remembered for the next portrait


async def test_a_portrait_of_someone_else_is_made_again_once_then_delivered_flagged(
    checked_rig: Rig, faces: FakeFaceChecker
) -> None:
    rig = checked_rig
    stranger = _png((20, 40, 60))
    faces.shows(stranger, "boris")
    job_id = await _queued_job(rig)
    await _submit(rig)

    first = await _portrait(rig, job_id, stranger)
    assert (first.status, first.identity_redos, first.attempts) == (TaskStatus.PENDING, 1, 1)
    assert "unlike the person" in (first.error or "")
    async with rig.sessionmaker() as session:
        assert await ledger.released_for_job(session, job_id) == 0  # the redo is on the provider's budget

    await _backoff_passes(rig, job_id)
    await _submit(rig)
    again = await _portrait(rig, job_id, stranger)

    assert (again.status, again.flagged, again.identity_redos) == (TaskStatus.STORED, True, 1)
    assert again.identity_score is not None and again.identity_score < faces.limits.identity_min_score


async def test_a_portrait_without_a_face_is_a_failed_attempt(checked_rig: Rig) -> None:
    rig = checked_rig
    job_id = await _queued_job(rig)
    await _submit(rig)

    task = await _portrait(rig, job_id, _png((0, 0, 0)))  # the checker was told of no one in it

    assert (task.status, task.attempts, task.error) == (TaskStatus.PENDING, 1, "no face in the portrait")
    assert task.result_key is None and task.identity_redos == 0
