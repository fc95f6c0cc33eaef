"""The redo queries (``storage.redos``) on a migrated SQLite database: one redo per request, a paid one
reserves its credit (and cannot overdraw), the free allowance counts only redos that did not fail, the
guarantee redoes exactly the shortfall once and credits back what is still unlike, once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import ledger, redos
from storage.jobs import NotEnoughCredits
from storage.models import GenerationJob, GenerationTask, LedgerEntry, User, utcnow
from studio.credits import grant_line
from studio.generation import claim_key
from studio.redo import RedoKind
from studio.states import JobStatus, TaskStatus


@pytest_asyncio.fixture
async def session(sqlite_sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sqlite_sessionmaker() as session:
        yield session


async def _pack(session: AsyncSession, photos: int, flagged: set[int] = frozenset()) -> GenerationJob:  # type: ignore[assignment]
    """A delivered pack of ``photos`` portraits; those at the ``flagged`` positions look unlike the person."""
    await session.execute(insert(User).values(id=1, telegram_id=1001, language="en"))
    now = utcnow()
    job = GenerationJob(
        user_id=1, chat_id=1001, language="en", style="professional", priority=100,
        status=JobStatus.COMPLETED, photos_total=photos, created_at=now,
    )  # fmt: skip
    session.add(job)
    await session.flush()
    for position in range(photos):
        session.add(
            GenerationTask(
                job_id=job.id, position=position, prompt_index=position, variant=0, seed=position + 1,
                claim_key=claim_key(100, now, job.id, position), status=TaskStatus.DELIVERED,
                flagged=position in flagged, created_at=now,
            )
        )  # fmt: skip
    await session.flush()
    return job


async def _tasks(session: AsyncSession, job_id: int) -> list[GenerationTask]:
    query = select(GenerationTask).where(GenerationTask.job_id == job_id).order_by(GenerationTask.position)
    return list((await session.execute(query)).scalars())


async def test_one_redo_per_request_and_only_redos_that_did_not_fail_use_the_allowance(session: AsyncSession) -> None:
    pack = await _pack(session, 7)
    [seventh] = (await _tasks(session, pack.id))[6:]
    first = await redos.create_redo(session, pack=pack, sources=[seventh], kind=RedoKind.FREE, request="reply:50")
    assert first is not None and first.photos_total == 1 and first.status == JobStatus.QUEUED
    again = await redos.create_redo(session, pack=pack, sources=[seventh], kind=RedoKind.FREE, request="reply:50")
    assert again is None
    second = await redos.create_redo(session, pack=pack, sources=[seventh], kind=RedoKind.FREE, request="reply:51")
    assert second is not None
    assert await redos.free_redos_used(session, pack.id) == 2
    await session.execute(update(GenerationJob).where(GenerationJob.id == second.id).values(status=JobStatus.FAILED))
    assert await redos.free_redos_used(session, pack.id) == 1
    # A redone portrait belongs to the pack it was redone for: its redo counts there too.
    session.add(GenerationTask(
        job_id=first.id, position=0, prompt_index=6, variant=0, seed=9, claim_key=claim_key(100, utcnow(), first.id, 0),
        status=TaskStatus.DELIVERED, created_at=utcnow(),
    ))  # fmt: skip
    await session.flush()
    [take] = await _tasks(session, first.id)
    assert (await redos.pack_of(session, take)).id == pack.id  # type: ignore[union-attr]
    assert await ledger.balance(session, 1) == 0  # free redos move no credits


async def test_a_paid_redo_reserves_one_credit_and_cannot_overdraw(session: AsyncSession) -> None:
    pack = await _pack(session, 3)
    task = (await _tasks(session, pack.id))[0]
    with pytest.raises(NotEnoughCredits):
        await redos.create_redo(session, pack=pack, sources=[task], kind=RedoKind.PAID, request="reply:60")
    await session.rollback()
    pack = await _pack(session, 3)
    task = (await _tasks(session, pack.id))[0]
    await ledger.record(session, 1, grant_line("t", 1, None))
    job = await redos.create_redo(session, pack=pack, sources=[task], kind=RedoKind.PAID, request="reply:60")
    assert job is not None and await ledger.balance(session, 1) == 0
    assert await ledger.still_reserved(session, job.id) == 1


async def test_the_guarantee_redoes_the_shortfall_once_and_credits_what_is_still_unlike_once(
    session: AsyncSession,
) -> None:
    pack = await _pack(session, 15, flagged=set(range(5, 15)))  # 5 pass, 10 unlike
    job = await redos.open_guarantee(session, pack, promised=10)
    assert job is not None and job.photos_total == 5
    redo = await redos.redo_of_job(session, job.id)
    assert redo is not None and redo.kind == RedoKind.GUARANTEE
    unlike = [task.id for task in await _tasks(session, pack.id) if task.flagged]
    assert redo.source_task_ids == unlike[:5]
    assert await redos.open_guarantee(session, pack, promised=10) is None  # once per pack
    assert await redos.open_guarantee(session, job, promised=1) is None  # a redo is no pack
    # Its portraits: two like the person, one unlike, one skipped, one like.
    outcomes = [(TaskStatus.DELIVERED, False), (TaskStatus.DELIVERED, True), (TaskStatus.SKIPPED, False)] + [
        (TaskStatus.DELIVERED, False)
    ] * 2
    for position, (status, flagged) in enumerate(outcomes):
        session.add(GenerationTask(
            job_id=job.id, position=position, prompt_index=position + 5, variant=0, seed=1,
            claim_key=claim_key(100, utcnow(), job.id, position), status=status, flagged=flagged, created_at=utcnow(),
        ))  # fmt: skip
    await session.flush()
    assert await redos.settle_guarantee(session, job) == 2
    assert await redos.settle_guarantee(session, job) == 0
    lines = (await session.execute(select(LedgerEntry.reference, LedgerEntry.delta))).all()
    assert sorted(lines) == sorted([(f"guarantee:task:{unlike[1]}", 1), (f"guarantee:task:{unlike[2]}", 1)])


async def test_no_guarantee_when_enough_pass_or_when_it_is_off(session: AsyncSession) -> None:
    pack = await _pack(session, 7, flagged={0, 1})
    assert await redos.open_guarantee(session, pack, promised=5) is None
    assert await redos.open_guarantee(session, pack, promised=0) is None
