"""A user's own account: where they came from (the deep-link source of their /start), the e-mail for
card receipts. Each call is one short transaction, committed before the handler talks to Telegram."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from storage.avatars import latest_ready_avatar
from storage.events import EventName, record_event
from storage.models import User
from storage.users import set_source_once


class AccountService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def started(self, user_id: int, *, source: str | None, first_time: bool) -> bool:
        """/start: keep the first deep-link source the user came with; a new user's first /start is the
        ``user_started`` event. Returns whether a ready photo set from before can be reused."""
        async with self.sessionmaker() as session:
            if source is not None:
                await set_source_once(session, user_id, source)
            if first_time:
                # A new user's first update is their /start (Telegram sends it when they open the bot).
                await record_event(session, EventName.USER_STARTED, user_id=user_id, source=source)
            if session.in_transaction():
                await session.commit()  # the write lock is released before the greeting is sent
            return await latest_ready_avatar(session, user_id) is not None

    async def set_email(self, user: User, email: str) -> None:
        """The address card receipts go to. ``user`` (the caller's row) shows it at once, unchanged
        as far as its own session is concerned: the write is committed here."""
        async with self.sessionmaker() as session:
            await session.execute(update(User).where(User.id == user.id).values(email=email))
            await session.commit()
        set_committed_value(user, "email", email)

    async def set_reminders(self, user: User, enabled: bool) -> None:
        """/settings: gentle reminders on or off; ``user`` shows the new value at once, as set_email."""
        async with self.sessionmaker() as session:
            await session.execute(update(User).where(User.id == user.id).values(reminders_enabled=enabled))
            await session.commit()
        set_committed_value(user, "reminders_enabled", enabled)
