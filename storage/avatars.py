"""Avatars (a user's set of reference photos) and their photos."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Avatar, GenerationJob, ReferencePhoto, utcnow
from storage.sql import rows_changed
from studio.intake import MAX_PHOTOS
from studio.states import AvatarStatus, JobStatus


@dataclass(frozen=True, slots=True)
class NewPhoto:
    storage_key: str
    size_bytes: int
    width: int
    height: int
    sha256: str
    file_unique_id: str | None


class DuplicatePhoto(Exception):
    """The same picture (by Telegram file id or by content) is already in this set."""


class AvatarFull(Exception):
    """The set already holds the maximum number of photos."""


async def create_avatar(session: AsyncSession, user_id: int) -> Avatar:
    avatar = Avatar(user_id=user_id, status=AvatarStatus.COLLECTING)
    session.add(avatar)
    await session.flush()
    return avatar


async def get_avatar(session: AsyncSession, avatar_id: int, user_id: int) -> Avatar | None:
    return (
        await session.execute(select(Avatar).where(Avatar.id == avatar_id, Avatar.user_id == user_id))
    ).scalar_one_or_none()


async def latest_ready_avatar(session: AsyncSession, user_id: int) -> Avatar | None:
    return (
        await session.execute(
            select(Avatar)
            .where(Avatar.user_id == user_id, Avatar.status == AvatarStatus.READY)
            .order_by(Avatar.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def resumable_avatar(session: AsyncSession, user_id: int, max_age: timedelta) -> Avatar | None:
    """A set the user was still collecting recently (their conversation state may have been lost)."""
    return (
        await session.execute(
            select(Avatar)
            .where(
                Avatar.user_id == user_id,
                Avatar.status == AvatarStatus.COLLECTING,
                Avatar.created_at > utcnow() - max_age,
            )
            .order_by(Avatar.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def photo_count(session: AsyncSession, avatar_id: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).select_from(ReferencePhoto).where(ReferencePhoto.avatar_id == avatar_id)
            )
        ).scalar_one()
    )


async def photos_of(session: AsyncSession, avatar_id: int) -> list[ReferencePhoto]:
    return list(
        (
            await session.execute(
                select(ReferencePhoto).where(ReferencePhoto.avatar_id == avatar_id).order_by(ReferencePhoto.slot)
            )
        ).scalars()
    )


async def is_known_photo(
    session: AsyncSession, avatar_id: int, *, file_unique_id: str | None = None, sha256: str | None = None
) -> bool:
    conditions = []
    if file_unique_id:
        conditions.append(ReferencePhoto.file_unique_id == file_unique_id)
    if sha256:
        conditions.append(ReferencePhoto.sha256 == sha256)
    if not conditions:
        return False
    found = await session.execute(
        select(ReferencePhoto.id).where(ReferencePhoto.avatar_id == avatar_id, or_(*conditions)).limit(1)
    )
    return found.first() is not None


async def add_photo(session: AsyncSession, avatar: Avatar, photo: NewPhoto) -> int:
    """Insert into the next free slot; return the new count. The UNIQUE constraints decide races."""
    for _ in range(MAX_PHOTOS + 1):
        count = await photo_count(session, avatar.id)
        if count >= MAX_PHOTOS:
            raise AvatarFull
        row = ReferencePhoto(
            avatar_id=avatar.id,
            user_id=avatar.user_id,
            slot=count + 1,
            storage_key=photo.storage_key,
            size_bytes=photo.size_bytes,
            width=photo.width,
            height=photo.height,
            sha256=photo.sha256,
            file_unique_id=photo.file_unique_id,
        )
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:
            if await is_known_photo(session, avatar.id, file_unique_id=photo.file_unique_id, sha256=photo.sha256):
                raise DuplicatePhoto from None
            continue  # another photo took that slot first; count again
        return count + 1
    raise AvatarFull


async def abandon_avatar(session: AsyncSession, avatar_id: int) -> bool:
    """Give up a set still being collected, so a later photo starts a new one instead of resuming it.

    A finished (READY) set is never touched: the user may reuse it for another pack.
    """
    result = await session.execute(
        update(Avatar)
        .where(Avatar.id == avatar_id, Avatar.status == AvatarStatus.COLLECTING)
        .values(status=AvatarStatus.DELETED)
    )
    return bool(rows_changed(result))


async def mark_ready(session: AsyncSession, avatar_id: int) -> None:
    await session.execute(
        update(Avatar)
        .where(Avatar.id == avatar_id, Avatar.status == AvatarStatus.COLLECTING)
        .values(status=AvatarStatus.READY, ready_at=utcnow())
    )


async def is_reference_of_job_in_flight(session: AsyncSession, storage_key: str) -> bool:
    """Whether ``storage_key`` is a selfie of a set that a queued or generating job still reads: the
    only files a provider may fetch through a signed ``/files`` link (a leaked link to a finished
    job's selfie, or to anything else we store, reads nothing)."""
    in_flight = (
        select(ReferencePhoto.id)
        .join(GenerationJob, GenerationJob.avatar_id == ReferencePhoto.avatar_id)
        .where(
            ReferencePhoto.storage_key == storage_key,
            GenerationJob.status.in_((JobStatus.QUEUED, JobStatus.PROCESSING)),
        )
        .limit(1)
    )
    return (await session.execute(in_flight)).first() is not None
