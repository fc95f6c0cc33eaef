"""User queries: idempotent registration and lookups."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import User, utcnow
from storage.sql import insert_for, rows_changed


@dataclass(frozen=True, slots=True)
class TelegramProfile:
    telegram_id: int
    username: str | None
    first_name: str | None
    language: str


async def register_user(session: AsyncSession, profile: TelegramProfile) -> tuple[User, bool]:
    """Insert the user once (concurrent updates race safely); return (user, created).

    Reads first: most updates come from known users, and on SQLite any INSERT would take the
    single write lock for the rest of the update's transaction.
    """
    known = (await session.execute(select(User).where(User.telegram_id == profile.telegram_id))).scalar_one_or_none()
    if known is not None:
        if known.username != profile.username or known.first_name != profile.first_name:
            known.username = profile.username
            known.first_name = profile.first_name
        return known, False
    statement = (
        insert_for(session, User)
        .values(
            telegram_id=profile.telegram_id,
            username=profile.username,
            first_name=profile.first_name,
            language=profile.language,
            created_at=utcnow(),
            last_seen_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[User.telegram_id])
    )
    result = await session.execute(statement)
    created = bool(rows_changed(result))
    user = (await session.execute(select(User).where(User.telegram_id == profile.telegram_id))).scalar_one()
    if not created and (user.username != profile.username or user.first_name != profile.first_name):
        user.username = profile.username
        user.first_name = profile.first_name
    return user, created


async def set_source_once(session: AsyncSession, user_id: int, source: str) -> bool:
    """Store the deep-link source only if none was stored before."""
    result = await session.execute(update(User).where(User.id == user_id, User.source.is_(None)).values(source=source))
    return bool(rows_changed(result))


async def language_of(session: AsyncSession, telegram_id: int) -> str | None:
    """The language of the user with this Telegram id; None when they never wrote to the bot."""
    return (await session.execute(select(User.language).where(User.telegram_id == telegram_id))).scalar_one_or_none()
