"""What a user does with their packs from the chat: cancel one still queued, look one up (its
originals), and /forget (delete every photo of theirs). Each change is one transaction of its own,
committed before the caller answers in the chat."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import jobs as job_queries
from storage import ledger, retention
from storage.files import FileStore
from storage.models import GenerationJob
from storage.orders import cancel_awaiting_orders
from studio.states import JobStatus


class CancelResult(StrEnum):
    CANCELLED = "cancelled"  # now, with its credits returned
    ALREADY = "already"  # by an earlier tap
    TOO_LATE = "too_late"  # portraits are being made
    UNKNOWN = "unknown"  # no such job of this user (a stale or forged button)


@dataclass(frozen=True, slots=True)
class JobCancel:
    result: CancelResult
    returned: int = 0  # the credits the cancelled job gave back


@dataclass(frozen=True, slots=True)
class Forgotten:
    busy: bool  # a pack is being made: nothing was deleted
    orders_cancelled: int = 0  # orders that were waiting for payment
    files: int = 0  # files deleted


class ResultsService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, files: FileStore) -> None:
        self.sessionmaker = sessionmaker
        self.files = files

    async def owned_job(self, job_id: int, user_id: int) -> GenerationJob | None:
        """The job, when it is this user's."""
        async with self.sessionmaker() as session:
            job = await job_queries.get_job(session, job_id)
        return job if job is not None and job.user_id == user_id else None

    async def cancel(self, job_id: int, user_id: int) -> JobCancel:
        """Cancel the user's pack while no portrait is made yet; its credits go back to the balance."""
        async with self.sessionmaker() as session:
            job = await job_queries.get_job(session, job_id)
            if job is None or job.user_id != user_id:
                return JobCancel(CancelResult.UNKNOWN)
            if not await job_queries.cancel_before_results(session, job.id, user_id):
                await session.refresh(job)
                return JobCancel(CancelResult.ALREADY if job.status == JobStatus.CANCELLED else CancelResult.TOO_LATE)
            returned = await ledger.released_for_job(session, job.id)
            await session.commit()
        return JobCancel(CancelResult.CANCELLED, returned)

    async def forget(self, user_id: int) -> Forgotten:
        """/forget: every selfie and portrait of the user, unless a pack is being made. Orders still
        waiting for payment are withdrawn too: an open invoice or card link would otherwise take money
        for a pack whose photos are gone. Rows first (committed), then the files."""
        async with self.sessionmaker() as session:
            if await retention.user_has_active_job(session, user_id):
                return Forgotten(busy=True)
            cancelled = await cancel_awaiting_orders(session, user_id)
            keys = await retention.forget_user_photos(session, user_id)
            await session.commit()
        for key in keys:
            await self.files.delete(key)
        return Forgotten(busy=False, orders_cancelled=cancelled, files=len(keys))
