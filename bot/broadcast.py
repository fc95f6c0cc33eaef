"""Broadcasts run in the background, one asyncio task per running broadcast, owned by this service
(built once in the composition root), never inside a handler.

Every send goes through the same ``Bot`` as everything else, so the session middleware's global
and per-chat limits pace it (``TELEGRAM_GLOBAL_RATE``): a broadcast cannot starve deliveries of
Telegram's budget by more than its share, and it honours 429s like every other call. Users who
blocked the bot are skipped (and counted as blocked); a 403 marks the user blocked. The state lives
in the database, so a stop, a restart or a crash resumes or finishes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.notices import BroadcastReport
from scheduler.notify import UserNotifier
from storage import broadcasts as queries
from storage.broadcasts import BroadcastStatus, RecipientStatus
from storage.deliveries import mark_user_blocked
from storage.models import Broadcast, User

log = logging.getLogger(__name__)


class BroadcastService:
    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        notifier: UserNotifier | None = None,
        batch_size: int = 50,
    ) -> None:
        self.bot = bot
        self.sessionmaker = sessionmaker
        self.notifier = notifier
        self.batch_size = batch_size
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    async def resume(self) -> None:
        """At start: broadcasts left running by a previous process go on where they stopped."""
        async with self.sessionmaker() as session:
            ids = await queries.running_ids(session)
        for broadcast_id in ids:
            self._spawn(broadcast_id)

    async def start(self, broadcast_id: int) -> bool:
        """draft → running, and send in the background; False if it was not a draft (a double tap)."""
        async with self.sessionmaker() as session:
            moved = await queries.move(session, broadcast_id, (BroadcastStatus.DRAFT,), BroadcastStatus.RUNNING)
            await session.commit()
        if moved:
            self._spawn(broadcast_id)
        return moved

    async def stop(self, broadcast_id: int | None = None) -> list[int]:
        """running → stopped (the given one, or every running one); the sender ends after its current send."""
        async with self.sessionmaker() as session:
            ids = [broadcast_id] if broadcast_id is not None else await queries.running_ids(session)
            stopped = [
                one
                for one in ids
                if await queries.move(session, one, (BroadcastStatus.RUNNING,), BroadcastStatus.STOPPED)
            ]
            await session.commit()
        for one in stopped:
            task = self._tasks.get(one)
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), timeout=10)
        return stopped

    async def wait(self, broadcast_id: int) -> None:
        task = self._tasks.get(broadcast_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Process shutdown: senders stop; the broadcasts stay running in the DB and resume on the next start."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, broadcast_id: int) -> None:
        if broadcast_id in self._tasks or self._closing:
            return
        task = asyncio.create_task(self._run(broadcast_id), name=f"broadcast-{broadcast_id}")
        self._tasks[broadcast_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(broadcast_id, None))

    async def _status(self, broadcast_id: int) -> str | None:
        async with self.sessionmaker() as session:
            return (
                await session.execute(select(Broadcast.status).where(Broadcast.id == broadcast_id))
            ).scalar_one_or_none()

    async def _run(self, broadcast_id: int) -> None:
        try:
            while await self._status(broadcast_id) == BroadcastStatus.RUNNING:
                async with self.sessionmaker() as session:
                    broadcast = await session.get(Broadcast, broadcast_id)
                    assert broadcast is not None
                    batch = await queries.next_recipients(session, broadcast, self.batch_size)
                if not batch:
                    await self._finish(broadcast_id)
                    return
                for user in batch:
                    # A stop between two sends takes effect before the next one.
                    if await self._status(broadcast_id) != BroadcastStatus.RUNNING:
                        return
                    await self._send_one(broadcast, user)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast %s failed; it stays running and resumes on the next start", broadcast_id)

    async def _send_one(self, broadcast: Broadcast, user: User) -> None:
        async with self.sessionmaker() as session:
            claimed = await queries.begin_recipient(session, broadcast.id, user.id)
            await session.commit()
        if not claimed:
            return  # another process took this user
        status, error = RecipientStatus.SENT, None
        if user.is_blocked:
            status, error = RecipientStatus.BLOCKED, "skipped: the user has blocked the bot"
        else:
            try:
                if broadcast.photo_file_id:
                    await self.bot.send_photo(user.telegram_id, broadcast.photo_file_id, caption=broadcast.text or None)
                else:
                    await self.bot.send_message(user.telegram_id, broadcast.text)
            except TelegramForbiddenError as failure:
                status, error = RecipientStatus.BLOCKED, failure.message
            except TelegramAPIError as failure:
                status, error = RecipientStatus.FAILED, failure.message
        async with self.sessionmaker() as session:
            await queries.finish_recipient(session, broadcast.id, user.id, status, error)
            if status == RecipientStatus.BLOCKED and not user.is_blocked:
                await mark_user_blocked(session, user.id, True)
            await session.commit()

    async def _finish(self, broadcast_id: int) -> None:
        async with self.sessionmaker() as session:
            await queries.settle_interrupted(session, broadcast_id)
            finished = await queries.move(session, broadcast_id, (BroadcastStatus.RUNNING,), BroadcastStatus.FINISHED)
            await session.commit()
            broadcast = await session.get(Broadcast, broadcast_id)
        if finished and broadcast is not None:
            await self._report(broadcast)

    async def _report(self, broadcast: Broadcast) -> None:
        """The final counts go to the admin who started it, in their language."""
        if self.notifier is None:
            return
        async with self.sessionmaker() as session:
            language = (
                await session.execute(select(User.language).where(User.telegram_id == broadcast.created_by))
            ).scalar_one_or_none()
        report = BroadcastReport(broadcast.id, broadcast.sent, broadcast.blocked, broadcast.failed, broadcast.total)
        await self.notifier.tell(broadcast.created_by, language or "ru", report)
