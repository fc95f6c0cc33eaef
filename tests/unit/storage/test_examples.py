"""Style examples' queries (storage/examples.py) and the guards they add elsewhere, on a migrated SQLite
database: an example job's skipped portrait releases no credit, a set goes live once (the one live
before is replaced), a file id once known is kept, and retention leaves the live examples alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import examples, queue, retention
from storage.models import ExampleSet, GenerationJob, GenerationTask, LedgerEntry, StyleExample, User, utcnow
from studio.examples import ExampleSetStatus
from studio.generation import claim_key
from studio.states import JobStatus, TaskStatus


@pytest_asyncio.fixture
async def session(sqlite_sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sqlite_sessionmaker() as session:
        yield session


async def _admin(session: AsyncSession) -> User:
    await session.execute(insert(User).values(id=1, telegram_id=1001, language="en"))
    user = await session.get(User, 1)
    assert user is not None
    return user


async def _set_with_jobs(session: AsyncSession, admin: User, styles: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """A generating set with one job per style of two stored portraits each; its id and the jobs."""
    example_set = await examples.create_set(session, admin, avatar_id=None)  # type: ignore[arg-type]
    example_set.status = ExampleSetStatus.GENERATING
    jobs = {}
    for style in styles:
        job = await examples.queue_example_job(session, example_set, admin, style, 2, priority=0)
        jobs[style] = job.id
        for position in range(2):
            session.add(
                GenerationTask(
                    job_id=job.id,
                    position=position,
                    prompt_index=position,
                    variant=0,
                    seed=1,
                    claim_key=claim_key(0, job.created_at, job.id, position),
                    status=TaskStatus.DELIVERED,
                    result_key=f"results/{job.id}/{position}.jpg",
                    telegram_file_id=f"file-{job.id}-{position}" if position == 0 else None,
                    stored_at=utcnow() - timedelta(days=400),
                )
            )
    await session.flush()
    return example_set.id, jobs


async def test_an_example_jobs_skipped_portrait_releases_no_credit(session: AsyncSession) -> None:
    admin = await _admin(session)
    _set_id, jobs = await _set_with_jobs(session, admin, ("professional",))
    task = GenerationTask(
        job_id=jobs["professional"],
        position=9,
        prompt_index=9,
        variant=0,
        seed=1,
        claim_key="z",
        status=TaskStatus.SUBMITTED,
    )
    session.add(task)
    await session.flush()
    assert await queue.skip_task(session, task.id, from_status=TaskStatus.SUBMITTED, error="failed")
    assert (await session.execute(select(func.count()).select_from(LedgerEntry))).scalar_one() == 0
    job = await session.get(GenerationJob, jobs["professional"], populate_existing=True)
    assert job is not None and job.photos_failed == 1 and job.order_id is None and job.status == JobStatus.QUEUED


async def test_a_set_goes_live_once_replacing_the_one_before_its_pictures_not_yet_sent(session: AsyncSession) -> None:
    admin = await _admin(session)
    old_id, old_jobs = await _set_with_jobs(session, admin, ("professional",))
    assert await examples.go_live(session, old_id, await examples.portraits_by_style(session, old_id))
    new_id, new_jobs = await _set_with_jobs(session, admin, ("professional", "creative"))
    chosen = await examples.portraits_by_style(session, new_id)
    assert list(chosen) == ["professional", "creative"] and all(len(ids) == 2 for ids in chosen.values())
    assert await examples.go_live(session, new_id, chosen)
    assert not await examples.go_live(session, new_id, chosen), "a second settle must write nothing"
    statuses = dict((await session.execute(select(ExampleSet.id, ExampleSet.status))).all())
    assert statuses == {old_id: ExampleSetStatus.REPLACED, new_id: ExampleSetStatus.LIVE}
    live = await examples.live_examples(session)
    # Not even the preview's file ids: one of those may name a document, which a photo album cannot show.
    assert [(e.style, e.file_id) for e in live] == [("creative", None)] * 2 + [("professional", None)] * 2
    assert {e.result_key for e in live} == {
        f"results/{new_jobs[style]}/{position}.jpg" for style in ("creative", "professional") for position in (0, 1)
    }
    assert old_jobs  # the old set's rows stay, no longer shown
    assert (await session.execute(select(func.count()).select_from(StyleExample))).scalar_one() == 2 + 4


async def test_a_known_file_id_is_kept_and_retention_spares_the_live_examples(session: AsyncSession) -> None:
    admin = await _admin(session)
    old_id, _ = await _set_with_jobs(session, admin, ("professional",))
    assert await examples.go_live(session, old_id, await examples.portraits_by_style(session, old_id))
    new_id, _ = await _set_with_jobs(session, admin, ("professional",))
    assert await examples.go_live(session, new_id, await examples.portraits_by_style(session, new_id))
    unknown = (await examples.live_examples(session))[0]
    await examples.remember_file_ids(session, {unknown.example_id: "first"})
    await examples.remember_file_ids(session, {unknown.example_id: "second"})
    assert (await session.get(StyleExample, unknown.example_id, populate_existing=True)).file_id == "first"  # type: ignore[union-attr]
    await examples.forget_file_ids(session, [unknown.example_id])
    assert (await session.get(StyleExample, unknown.example_id, populate_existing=True)).file_id is None  # type: ignore[union-attr]

    for job_id in (await session.execute(select(GenerationJob.id))).scalars():
        await session.execute(
            GenerationJob.__table__.update().where(GenerationJob.id == job_id).values(status=JobStatus.COMPLETED)
        )
    removed = await retention.remove_results_stored_before(session, utcnow() - timedelta(days=30))
    live_keys = {e.result_key for e in await examples.live_examples(session)}
    assert len(removed) == 2 and not live_keys & set(removed), "only the replaced set's portraits go"
