"""The originals of a pack: the full-resolution files of its delivered portraits that are still stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Favourite, GenerationJob, GenerationTask
from studio.states import TaskStatus


def kept_portraits(job_id: int, user_id: int, *columns: Any) -> Select[Any]:
    """``columns`` of the user's pack's delivered portraits whose file is kept (nothing when the job is
    not theirs): what originals and a profile photo are made from."""
    kept: list[ColumnElement[bool]] = [
        GenerationTask.job_id == job_id,
        GenerationJob.user_id == user_id,
        GenerationTask.status == TaskStatus.DELIVERED,
        GenerationTask.result_key.is_not(None),
    ]
    return select(*columns).join(GenerationJob, GenerationJob.id == GenerationTask.job_id).where(*kept)


async def stored_originals(
    session: AsyncSession, job_id: int, user_id: int, *, favourites_only: bool = False
) -> list[tuple[int, str]]:
    """(position, file key) of each delivered portrait whose file is kept (only the user's favourites
    when ``favourites_only``), in pack order; empty when the job is not this user's."""
    query = kept_portraits(job_id, user_id, GenerationTask.position, GenerationTask.result_key).order_by(
        GenerationTask.position
    )
    if favourites_only:
        query = query.join(Favourite, (Favourite.task_id == GenerationTask.id) & (Favourite.user_id == user_id))
    rows = await session.execute(query)
    return [(position, key) for position, key in rows.all() if key]
