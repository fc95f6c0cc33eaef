"""Generation jobs: created from paid (or free) orders with their credits reserved, queued by
priority then age, cancellable while queued. Every status change is a conditional UPDATE."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import ledger
from storage.models import GenerationJob, Order, User, utcnow
from studio.credits import release_line_for_cancel, reserve_line
from studio.states import ACTIVE_JOB_STATUSES, JobStatus

PRIORITY_PAID = 100
PRIORITY_FREE = 0


class NotEnoughCredits(Exception):
    """The user's balance does not cover the job (should not happen for a paid order)."""


async def create_job_for_order(
    session: AsyncSession, order: Order, user: User, *, priority: int, language: str | None = None
) -> GenerationJob | None:
    """Queue the order's job and reserve its credits, in the caller's transaction.

    Returns None when the order already has a job (a repeated event): the UNIQUE order_id decides.
    """
    existing = (
        await session.execute(select(GenerationJob).where(GenerationJob.order_id == order.id))
    ).scalar_one_or_none()
    if existing is not None:
        return None
    job = GenerationJob(
        user_id=order.user_id,
        order_id=order.id,
        avatar_id=order.avatar_id,
        chat_id=user.telegram_id,
        language=language or user.language,
        style=order.style,
        priority=priority,
        status=JobStatus.QUEUED,
        photos_total=order.photos,
        created_at=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(job)
            await session.flush()
    except IntegrityError:
        return None
    if await ledger.balance(session, order.user_id) < order.photos:
        raise NotEnoughCredits(f"user {order.user_id} cannot cover {order.photos} photos")
    await ledger.record(session, order.user_id, reserve_line(job.id, order.photos), order_id=order.id, job_id=job.id)
    return job


async def queue_position(session: AsyncSession, job: GenerationJob) -> int:
    """1-based place among queued jobs: higher priority first, then older first."""
    ahead = await session.execute(
        select(func.count())
        .select_from(GenerationJob)
        .where(
            GenerationJob.status == JobStatus.QUEUED,
            or_(
                GenerationJob.priority > job.priority,
                and_(GenerationJob.priority == job.priority, GenerationJob.created_at < job.created_at),
                and_(
                    GenerationJob.priority == job.priority,
                    GenerationJob.created_at == job.created_at,
                    GenerationJob.id < job.id,
                ),
            ),
        )
    )
    return int(ahead.scalar_one()) + 1


async def active_jobs(session: AsyncSession, user_id: int) -> list[GenerationJob]:
    return list(
        (
            await session.execute(
                select(GenerationJob)
                .where(GenerationJob.user_id == user_id, GenerationJob.status.in_(list(ACTIVE_JOB_STATUSES)))
                .order_by(GenerationJob.id)
            )
        ).scalars()
    )


async def get_job(session: AsyncSession, job_id: int) -> GenerationJob | None:
    return await session.get(GenerationJob, job_id)


async def cancel_queued_job(session: AsyncSession, job_id: int, user_id: int | None = None) -> bool:
    """queued → cancelled and the reserved credits released, once; False if generation already began."""
    conditions = [GenerationJob.id == job_id, GenerationJob.status == JobStatus.QUEUED]
    if user_id is not None:
        conditions.append(GenerationJob.user_id == user_id)
    result = await session.execute(
        update(GenerationJob)
        .where(*conditions)
        .values(status=JobStatus.CANCELLED, finished_at=utcnow())
        .returning(GenerationJob.user_id, GenerationJob.photos_total, GenerationJob.order_id)
    )
    row = result.first()
    if row is None:
        return False
    owner, photos, order_id = row
    await ledger.record(session, owner, release_line_for_cancel(job_id, photos), order_id=order_id, job_id=job_id)
    return True
