"""Broadcasts run in the background, one asyncio task per running broadcast, owned by this service
(built once in the composition root), never inside a handler. It implements scheduler.admin's
``BroadcastRunner`` and reaches the chat only through the :class:`BroadcastSender` port that bot/
implements.

The bot's sender goes through the same ``Bot`` as everything else, so the session middleware's global
and per-chat limits pace it (``TELEGRAM_GLOBAL_RATE``): a broadcast cannot starve deliveries of
Telegram's budget by more than its share, and it honours 429s like every other call. Users who
blocked the bot are skipped (and counted as blocked); a refusal because of a block marks the user
blocked. The state lives in the database, so a stop, a restart or a crash resumes or finishes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.background import BackgroundTasks
from scheduler.notices import BroadcastReport
from scheduler.notify import UserNotifier
from storage import broadcasts as queries
from storage.broadcasts import BroadcastStatus, RecipientStatus
from storage.deliveries import mark_user_blocked
from storage.models import Broadcast, User
from storage.users import language_of

log = logging.getLogger(__name__)

# A stop waits this long for the message being sent, so the counts it reports include it.
STOP_WAIT_SECONDS = 10.0


# ------------------------------------------------------------------ the port to the chat


@dataclass(frozen=True, slots=True)
class Sent:
    """The message reached the chat."""


@dataclass(frozen=True, slots=True)
class Blocked:
    """The user blocked the bot (or deleted their account): nothing arrived, and nothing will."""

    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Telegram refused this one message; the user may still be reachable."""

    reason: str


BroadcastOutcome = Sent | Blocked | Failed


class BroadcastSender(Protocol):
    """Sends one broadcast message to one chat. An error the sender cannot classify propagates: the
    broadcast then stops in this process and resumes on the next start."""

    async def send_text(self, chat_id: int, html: str) -> BroadcastOutcome: ...

    async def send_photo(self, chat_id: int, photo_file_id: str, caption_html: str | None) -> BroadcastOutcome: ...


class RecordingBroadcastSender:
    """The in-process sender (tests, simulations): keeps what it was asked to send, sends nothing.

    ``outcomes`` answers for a chat instead of ``Sent``; ``before_send`` runs before each send (a stop
    arriving mid-broadcast, say).
    """

    def __init__(self) -> None:
        self.sent: list[tuple[int, str | None, str | None]] = []  # (chat, text or caption, photo file id)
        self.outcomes: dict[int, BroadcastOutcome] = {}
        self.before_send: Callable[[int], Awaitable[None]] | None = None

    async def send_text(self, chat_id: int, html: str) -> BroadcastOutcome:
        return await self._send(chat_id, html, None)

    async def send_photo(self, chat_id: int, photo_file_id: str, caption_html: str | None) -> BroadcastOutcome:
        return await self._send(chat_id, caption_html, photo_file_id)

    async def _send(self, chat_id: int, text: str | None, photo_file_id: str | None) -> BroadcastOutcome:
        if self.before_send is not None:
            await self.before_send(chat_id)
        outcome = self.outcomes.get(chat_id, Sent())
        if isinstance(outcome, Sent):
            self.sent.append((chat_id, text, photo_file_id))
        return outcome

    @property
    def chats(self) -> list[int]:
        return [chat_id for chat_id, _, _ in self.sent]


# ------------------------------------------------------------------ the service


class BroadcastService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        sender: BroadcastSender,
        notifier: UserNotifier | None = None,
        batch_size: int = 50,
        stop_wait_seconds: float = STOP_WAIT_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.sender = sender
        self.notifier = notifier
        self.batch_size = batch_size
        self.stop_wait_seconds = stop_wait_seconds
        self._senders = BackgroundTasks("broadcast")

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(one), timeout=self.stop_wait_seconds)
        return stopped

    async def wait(self, broadcast_id: int) -> None:
        # Shielded: a waiter that gives up (a stop's timeout) must not cancel the sender mid-send.
        await asyncio.shield(self._senders.wait(broadcast_id))

    async def close(self) -> None:
        """Process shutdown: senders stop; the broadcasts stay running in the DB and resume on the next start."""
        await self._senders.stop()

    def _spawn(self, broadcast_id: int) -> None:
        self._senders.spawn(self._run(broadcast_id), key=broadcast_id, name=f"broadcast-{broadcast_id}")

    async def _status(self, broadcast_id: int) -> str | None:
        async with self.sessionmaker() as session:
            return await queries.status_of(session, broadcast_id)

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
        outcome: BroadcastOutcome
        if user.is_blocked:
            outcome = Blocked("skipped: the user has blocked the bot")
        elif broadcast.photo_file_id:
            outcome = await self.sender.send_photo(user.telegram_id, broadcast.photo_file_id, broadcast.text or None)
        else:
            outcome = await self.sender.send_text(user.telegram_id, broadcast.text)
        match outcome:
            case Sent():
                status, error = RecipientStatus.SENT, None
            case Blocked(reason=reason):
                status, error = RecipientStatus.BLOCKED, reason
            case Failed(reason=reason):
                status, error = RecipientStatus.FAILED, reason
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
            language = await language_of(session, broadcast.created_by)
        report = BroadcastReport(broadcast.id, broadcast.sent, broadcast.blocked, broadcast.failed, broadcast.total)
        await self.notifier.tell(broadcast.created_by, language or "ru", report)
