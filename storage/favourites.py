"""Favourites' queries: a portrait marked or unmarked by its owner's reaction, a user's favourites in
pack order, and the portrait a profile photo is made from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Favourite, GenerationJob, GenerationTask, utcnow
from storage.originals import kept_portraits
from storage.sql import insert_for, rows_changed
from studio.states import TaskStatus


async def mark(session: AsyncSession, user_id: int, task_id: int) -> bool:
    """True when this call made the portrait a favourite (False: it was one already)."""
    result = await session.execute(
        insert_for(session, Favourite)
        .values(user_id=user_id, task_id=task_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[Favourite.user_id, Favourite.task_id])
    )
    return bool(rows_changed(result))


async def unmark(session: AsyncSession, user_id: int, task_id: int) -> bool:
    result = await session.execute(delete(Favourite).where(Favourite.user_id == user_id, Favourite.task_id == task_id))
    return bool(rows_changed(result))


async def favourite_portraits(session: AsyncSession, user_id: int, job_id: int | None = None) -> list[GenerationTask]:
    """The user's favourite portraits (of one pack when ``job_id`` is given), oldest pack first, in
    pack order."""
    query = (
        select(GenerationTask)
        .join(Favourite, Favourite.task_id == GenerationTask.id)
        .where(Favourite.user_id == user_id, GenerationTask.status == TaskStatus.DELIVERED)
        .order_by(GenerationTask.job_id, GenerationTask.position)
    )
    if job_id is not None:
        query = query.where(GenerationTask.job_id == job_id)
    return list((await session.execute(query)).scalars())


async def profile_source(session: AsyncSession, job_id: int, user_id: int) -> GenerationTask | None:
    """The portrait of the user's pack a profile photo is made from: its first favourite whose file
    is kept, else its first delivered portrait whose file is kept; None when the job is not theirs or
    nothing is left."""
    kept = kept_portraits(job_id, user_id, GenerationTask)
    favourite = (
        select(Favourite.task_id).where(Favourite.user_id == user_id, Favourite.task_id == GenerationTask.id).exists()
    )
    query = kept.order_by(favourite.desc(), GenerationTask.position).limit(1)
    task: GenerationTask | None = (await session.execute(query)).scalar_one_or_none()
    return task


async def favourites_by_style(session: AsyncSession, since: datetime, until: datetime) -> dict[str, int]:
    """Portraits marked in the window and still favourites, per style: which styles people keep."""
    rows = await session.execute(
        select(GenerationJob.style, func.count())
        .select_from(Favourite)
        .join(GenerationTask, GenerationTask.id == Favourite.task_id)
        .join(GenerationJob, GenerationJob.id == GenerationTask.job_id)
        .where(Favourite.created_at >= since, Favourite.created_at < until)
        .group_by(GenerationJob.style)
    )
    return {str(style): int(count) for style, count in rows.all()}
