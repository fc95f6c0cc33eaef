"""What the retention rules make due for deletion, and forgetting one user's photos.

Rows go first, in the caller's transaction; the returned keys are deleted from the file store
only after that commits. A crash in between leaves files no row points to — the orphan sweep
takes those — never a row pointing to a missing file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Avatar, ExampleSet, GenerationJob, GenerationTask, ReferencePhoto, StyleExample
from studio.examples import ExampleSetStatus
from studio.states import ACTIVE_JOB_STATUSES, AvatarStatus

# Everything PinGlass writes to the file store lives under these prefixes.
STORE_PREFIXES = ("refs/", "results/")


async def avatars_due(session: AsyncSession, cutoff: datetime, limit: int = 500) -> list[int]:
    """Photo sets whose owner's last job finished (or, with no job, the set was made) before ``cutoff``.

    A user with a job still running keeps every set: the provider may still need the references.
    """
    last_finished = (
        select(func.max(GenerationJob.finished_at))
        .where(GenerationJob.user_id == Avatar.user_id)
        .correlate(Avatar)
        .scalar_subquery()
    )
    active = (
        select(GenerationJob.id)
        .where(GenerationJob.user_id == Avatar.user_id, GenerationJob.status.in_(list(ACTIVE_JOB_STATUSES)))
        .exists()
    )
    has_photos = select(ReferencePhoto.id).where(ReferencePhoto.avatar_id == Avatar.id).exists()
    query = (
        select(Avatar.id)
        .where(
            has_photos,
            ~active,
            Avatar.created_at < cutoff,
            (last_finished.is_(None)) | (last_finished < cutoff),
        )
        .order_by(Avatar.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def remove_reference_photos(session: AsyncSession, avatar_ids: list[int]) -> list[str]:
    """Delete the sets' reference rows and retire the sets; returns the file keys to delete."""
    if not avatar_ids:
        return []
    keys = list(
        (
            await session.execute(
                delete(ReferencePhoto)
                .where(ReferencePhoto.avatar_id.in_(avatar_ids))
                .returning(ReferencePhoto.storage_key)
            )
        ).scalars()
    )
    await session.execute(update(Avatar).where(Avatar.id.in_(avatar_ids)).values(status=AvatarStatus.DELETED))
    return keys


async def remove_results_stored_before(session: AsyncSession, cutoff: datetime, limit: int = 2000) -> list[str]:
    """Forget the stored files of portraits made before ``cutoff`` (jobs that are over); returns their keys."""
    over = select(GenerationJob.id).where(
        GenerationJob.id == GenerationTask.job_id, GenerationJob.status.not_in(list(ACTIVE_JOB_STATUSES))
    )
    # The live style examples are shown to every new user: they stay while they are shown.
    shown = (
        select(StyleExample.id)
        .join(ExampleSet, ExampleSet.id == StyleExample.set_id)
        .where(StyleExample.task_id == GenerationTask.id, ExampleSet.status == ExampleSetStatus.LIVE)
    )
    rows = await session.execute(
        select(GenerationTask.id, GenerationTask.result_key, GenerationTask.thumb_key)
        .where(
            GenerationTask.stored_at < cutoff,
            GenerationTask.result_key.is_not(None) | GenerationTask.thumb_key.is_not(None),
            over.exists(),
            ~shown.exists(),
        )
        .order_by(GenerationTask.id)
        .limit(limit)
    )
    return await _clear_results(session, [(row[0], row[1], row[2]) for row in rows])


async def user_has_active_job(session: AsyncSession, user_id: int) -> bool:
    query = select(GenerationJob.id).where(
        GenerationJob.user_id == user_id, GenerationJob.status.in_(list(ACTIVE_JOB_STATUSES))
    )
    return (await session.execute(query.limit(1))).first() is not None


async def forget_user_photos(session: AsyncSession, user_id: int) -> list[str]:
    """/forget: every selfie and portrait file of this user (rows first); returns the keys to delete.

    Orders, payments and the ledger stay: they are the accounting record, not photos.
    """
    avatar_ids = list((await session.execute(select(Avatar.id).where(Avatar.user_id == user_id))).scalars())
    keys = await remove_reference_photos(session, avatar_ids)
    rows = await session.execute(
        select(GenerationTask.id, GenerationTask.result_key, GenerationTask.thumb_key)
        .join(GenerationJob, GenerationJob.id == GenerationTask.job_id)
        .where(GenerationJob.user_id == user_id)
    )
    keys += await _clear_results(session, [(row[0], row[1], row[2]) for row in rows], forget_telegram_copy=True)
    return keys


async def referenced_keys(session: AsyncSession) -> set[str]:
    """Every file key a row points to (the orphan sweep keeps exactly these)."""
    references = (await session.execute(select(ReferencePhoto.storage_key))).scalars()
    results = (await session.execute(select(GenerationTask.result_key, GenerationTask.thumb_key))).all()
    keys = set(references)
    for result_key, thumb_key in results:
        keys.update(key for key in (result_key, thumb_key) if key)
    return keys


async def _clear_results(
    session: AsyncSession,
    rows: Iterable[tuple[int, str | None, str | None]],
    *,
    forget_telegram_copy: bool = False,
) -> list[str]:
    keys: list[str] = []
    task_ids: list[int] = []
    for task_id, result_key, thumb_key in rows:
        task_ids.append(task_id)
        keys.extend(key for key in (result_key, thumb_key) if key)
    if task_ids:
        values: dict[str, object] = {"result_key": None, "thumb_key": None}
        if forget_telegram_copy:
            values["telegram_file_id"] = None
        await session.execute(update(GenerationTask).where(GenerationTask.id.in_(task_ids)).values(**values))
    return keys
