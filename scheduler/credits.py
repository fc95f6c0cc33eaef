"""Spending the photo-credit balance: a pack the balance covers starts without a payment.

A spend is one transaction that cannot overdraw: it takes the user's row lock first (so two
spends of one user take turns and the second sees the first one's reservation), and it is
idempotent per source, the UNIQUE (user_id, spend_key) of its order: a double tap on the same
button inserts one order and queues one job.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.notices import JobQueued
from scheduler.notify import UserNotifier
from scheduler.signals import WorkSignals
from storage import avatars as avatar_queries
from storage import jobs, ledger
from storage import orders as order_queries
from storage.models import GenerationJob, User
from studio.catalogue import Catalogue
from studio.states import FINAL_JOB_STATUSES, AvatarStatus


class CreditsUnavailable(Exception):
    """The balance cannot start this pack. ``reason``: "used" (this source was spent already),
    "not_enough" (the balance does not cover it), "photos_gone" or "unknown" (a stale button)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Spent:
    job_id: int
    photos: int
    balance_left: int


def picker_spend_key(message_id: int) -> str:
    """A tap in the pack picker: every button of one picker message spends once."""
    return f"picker:{message_id}"


def job_spend_key(source_job_id: int) -> str:
    """The credits a job gave back (failed, cancelled, partly skipped) start one new pack."""
    return f"job:{source_job_id}"


class CreditService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        catalogue: Catalogue,
        notifier: UserNotifier,
        signals: WorkSignals,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalogue = catalogue
        self.notifier = notifier
        self.signals = signals

    @property
    def largest_pack(self) -> int:
        return max(pack.photos for pack in self.catalogue.packs)

    async def balance(self, user_id: int) -> int:
        async with self.sessionmaker() as session:
            return await ledger.balance(session, user_id)

    async def returned_by(self, job_id: int) -> int:
        """The credits a job has given back so far: what its "Use N credits" button offers."""
        async with self.sessionmaker() as session:
            return await ledger.released_for_job(session, job_id)

    async def spend(
        self, user: User, *, avatar_id: int, style: str, photos: int, spend_key: str, tap: str | None = None
    ) -> Spent:
        """A pack of ``photos`` with this photo set and style, paid from the balance, queued at once.

        ``tap``: the button tap (callback query id) asking. The same tap delivered again (Telegram
        re-posts what a killed process never answered) is told about the pack it started, not "used".
        """
        if self.catalogue.find_style(style) is None or not 1 <= photos <= self.largest_pack:
            raise CreditsUnavailable("unknown")
        async with self.sessionmaker() as session:
            await ledger.lock_user(session, user.id)
            avatar = await avatar_queries.get_avatar(session, avatar_id, user.id)
            if avatar is None or avatar.status != AvatarStatus.READY:
                raise CreditsUnavailable("photos_gone")
            order = await order_queries.create_spend_order(
                session,
                user_id=user.id,
                avatar_id=avatar.id,
                style=style,
                photos=photos,
                spend_key=spend_key,
                created_by=tap,
            )
            if order is None:
                job = await self._started_by(session, user, spend_key, tap)
            else:
                try:
                    queued = await jobs.create_job_for_order(session, order, user, priority=jobs.PRIORITY_PAID)
                except jobs.NotEnoughCredits:
                    await session.rollback()
                    raise CreditsUnavailable("not_enough") from None
                assert queued is not None  # the order is new, so it has no job yet
                job = queued
            position = await jobs.queue_position(session, job)
            left = await ledger.balance(session, user.id)
            await session.commit()
        self.signals.job_queued()
        await self._tell_queued(user, job, position)
        return Spent(job_id=job.id, photos=job.photos_total, balance_left=left)

    async def _started_by(self, session: AsyncSession, user: User, spend_key: str, tap: str | None) -> GenerationJob:
        """The job ``tap`` started from ``spend_key`` earlier; "used" when another tap spent the key."""
        order = await order_queries.spent_by(session, user.id, spend_key, tap) if tap is not None else None
        job = await jobs.job_for_order(session, order.id) if order is not None else None
        if job is None or job.status in FINAL_JOB_STATUSES:
            raise CreditsUnavailable("used")
        return job

    async def spend_returned(self, source_job_id: int, user: User, tap: str | None = None) -> Spent:
        """The "Use N credits" button under a finished, failed or cancelled pack: the credits that job
        gave back start a new pack with the same photos and style."""
        async with self.sessionmaker() as session:
            source = await jobs.get_job(session, source_job_id)
            if source is None or source.user_id != user.id or source.status not in FINAL_JOB_STATUSES:
                raise CreditsUnavailable("unknown")
            returned = await ledger.released_for_job(session, source.id)
            avatar_id, style = source.avatar_id, source.style
        if returned <= 0:
            raise CreditsUnavailable("unknown")
        if avatar_id is None:
            raise CreditsUnavailable("photos_gone")
        spend_key = job_spend_key(source_job_id)
        return await self.spend(user, avatar_id=avatar_id, style=style, photos=returned, spend_key=spend_key, tap=tap)

    async def _tell_queued(self, user: User, job: GenerationJob, position: int) -> None:
        await self.notifier.tell(user.telegram_id, user.language, JobQueued(job.id, job.photos_total, position))
