"""Generation jobs: created from paid (or free) orders with their credits reserved, queued by
priority then age, cancellable while queued. Every status change is a conditional UPDATE."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import ledger
from storage.events import EventName, record_event
from storage.models import GenerationJob, GenerationTask, Order, User, utcnow
from studio.credits import release_line_for_cancel, reserve_line
from studio.states import ACTIVE_JOB_STATUSES, JobStatus, TaskStatus

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
    await record_event(
        session, EventName.GENERATION_QUEUED, user_id=order.user_id, job_id=job.id, image_count=order.photos
    )
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
    return await _cancel(session, job_id, user_id, sources=(JobStatus.QUEUED,))


async def cancel_before_results(session: AsyncSession, job_id: int, user_id: int | None = None) -> bool:
    """Cancel a queued job, or a processing one while no portrait exists yet, releasing every credit once.

    In-flight provider tasks are skipped: their late results find no task to store, so nothing the
    user was refunded for can reach them.
    """
    return await _cancel(session, job_id, user_id, sources=(JobStatus.QUEUED, JobStatus.PROCESSING))


async def _cancel(session: AsyncSession, job_id: int, user_id: int | None, *, sources: tuple[JobStatus, ...]) -> bool:
    produced = (
        select(GenerationTask.id)
        .where(
            GenerationTask.job_id == GenerationJob.id,
            GenerationTask.status.in_([TaskStatus.SUCCEEDED, TaskStatus.STORED, TaskStatus.DELIVERED]),
        )
        .exists()
    )
    conditions = [GenerationJob.id == job_id, GenerationJob.status.in_(list(sources)), ~produced]
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
    await session.execute(
        update(GenerationTask)
        .where(
            GenerationTask.job_id == job_id,
            GenerationTask.status.in_([TaskStatus.PENDING, TaskStatus.SUBMITTED, TaskStatus.FAILED]),
        )
        .values(status=TaskStatus.SKIPPED, claimed_by=None, lease_expires_at=None, next_poll_at=None)
    )
    await ledger.record(session, owner, release_line_for_cancel(job_id, photos), order_id=order_id, job_id=job_id)
    return True
