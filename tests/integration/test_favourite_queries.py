"""Favourites' queries on SQLite and PostgreSQL: marking is idempotent, unmarking removes, "favourites
only" originals and the profile photo's source follow the marks, and /stats groups them by style."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from storage import favourites
from storage.db import create_engine, create_sessionmaker
from storage.models import GenerationJob, GenerationTask, User, utcnow
from storage.originals import stored_originals
from studio.states import JobStatus, TaskStatus


async def _pack(session: AsyncSession, user: User, style: str, kept: int = 4) -> list[GenerationTask]:
    job = GenerationJob(
        user_id=user.id, chat_id=user.telegram_id, style=style, priority=1, status=JobStatus.COMPLETED, photos_total=4
    )
    session.add(job)
    await session.flush()
    tasks = [
        GenerationTask(
            job_id=job.id,
            position=position,
            prompt_index=position,
            seed=position,
            claim_key=f"{job.id:08d}{position:04d}",
            status=TaskStatus.DELIVERED,
            result_key=f"results/{job.id}/{position}.png" if position < kept else None,
        )
        for position in range(4)
    ]
    session.add_all(tasks)
    await session.flush()
    return tasks


async def test_favourites_queries(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            owner, other = User(telegram_id=7001), User(telegram_id=7002)
            session.add_all([owner, other])
            await session.flush()
            pack = await _pack(session, owner, "professional", kept=3)
            second = await _pack(session, owner, "creative")

            assert await favourites.profile_source(session, pack[0].job_id, owner.id) == pack[0]  # no favourite yet
            assert await favourites.profile_source(session, pack[0].job_id, other.id) is None  # not their pack
            assert await favourites.mark(session, owner.id, pack[2].id)
            assert not await favourites.mark(session, owner.id, pack[2].id)  # a repeated update
            assert await favourites.mark(session, owner.id, pack[1].id)
            assert await favourites.mark(session, owner.id, pack[3].id)  # its file is gone
            assert await favourites.mark(session, owner.id, second[0].id)
            assert await favourites.unmark(session, owner.id, pack[1].id)
            assert not await favourites.unmark(session, owner.id, pack[1].id)

            assert [t.id for t in await favourites.favourite_portraits(session, owner.id)] == [
                pack[2].id,
                pack[3].id,
                second[0].id,
            ]
            in_pack = await favourites.favourite_portraits(session, owner.id, pack[0].job_id)
            assert [task.id for task in in_pack] == [pack[2].id, pack[3].id]
            assert await stored_originals(session, pack[0].job_id, owner.id, favourites_only=True) == [
                (2, f"results/{pack[0].job_id}/2.png")
            ]
            assert len(await stored_originals(session, pack[0].job_id, owner.id)) == 3
            assert await favourites.profile_source(session, pack[0].job_id, owner.id) == pack[2]
            now = utcnow()
            window = (now - timedelta(minutes=1), now + timedelta(minutes=1))
            assert await favourites.favourites_by_style(session, *window) == {"professional": 2, "creative": 1}
            assert await favourites.favourites_by_style(session, now - timedelta(days=2), now - timedelta(days=1)) == {}
            await session.rollback()
    finally:
        await engine.dispose()
