"""Generation jobs: created from paid (or free) orders with their credits reserved, queued by
priority then age, cancellable while queued. Status changes are ``storage.transitions``'."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import ledger, transitions
from storage.events import EventName, record_event
from storage.models import GenerationJob, GenerationTask, Order, User, utcnow
from studio.credits import release_line_for_cancel, release_line_for_stop, reserve_line
from studio.states import ACTIVE_JOB_STATUSES, PORTRAIT_TASK_STATUSES, JobStatus

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
    await ledger.lock_user(session, order.user_id)  # spends of one user take turns: none overdraws
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


async def job_for_order(session: AsyncSession, order_id: int) -> GenerationJob | None:
    return (await session.execute(select(GenerationJob).where(GenerationJob.order_id == order_id))).scalar_one_or_none()


async def get_job(session: AsyncSession, job_id: int) -> GenerationJob | None:
    return await session.get(GenerationJob, job_id)


async def cancel_queued_job(session: AsyncSession, job_id: int, user_id: int | None = None) -> bool:
    """queued → cancelled and the reserved credits released, once; False if generation already began."""
    return await _cancel(session, job_id, user_id, transitions.CANCEL_QUEUED_JOB)


async def cancel_before_results(session: AsyncSession, job_id: int, user_id: int | None = None) -> bool:
    """Cancel a queued job, or a processing one while no portrait exists yet, releasing every credit once.

    In-flight provider tasks are skipped: their late results find no task to store, so nothing the
    user was refunded for can reach them.
    """
    return await _cancel(session, job_id, user_id, transitions.CANCEL_JOB_BEFORE_RESULTS)


async def _cancel(
    session: AsyncSession, job_id: int, user_id: int | None, transition: transitions.Transition[JobStatus]
) -> bool:
    row = await transitions.cancel_job(session, transition, job_id, user_id, finished_at=utcnow())
    if row is None:
        return False
    owner, order_id = row
    await _skip_open_tasks(session, job_id)
    # Portraits skipped before the cancel were released one by one: give back only what is left.
    left = await ledger.still_reserved(session, job_id)
    if left > 0:
        await ledger.record(session, owner, release_line_for_cancel(job_id, left), order_id=order_id, job_id=job_id)
    return True


async def _skip_open_tasks(session: AsyncSession, job_id: int) -> None:
    await transitions.skip_open_tasks(session, job_id, claimed_by=None, lease_expires_at=None, next_poll_at=None)


async def _release_unproduced(session: AsyncSession, job: GenerationJob) -> int:
    """After its open tasks are skipped: release what the job holds beyond the portraits that exist."""
    produced = int(
        (
            await session.execute(
                select(func.count()).where(
                    GenerationTask.job_id == job.id, GenerationTask.status.in_(sorted(PORTRAIT_TASK_STATUSES))
                )
            )
        ).scalar_one()
    )
    left = await ledger.still_reserved(session, job.id) - produced
    if left <= 0:
        return 0
    line = release_line_for_stop(job.id, left)
    recorded = await ledger.record(session, job.user_id, line, order_id=job.order_id, job_id=job.id)
    return left if recorded else 0


async def fail_for_local_reason(session: AsyncSession, job_id: int) -> int | None:
    """queued/processing → failed for a reason of ours (the selfies are gone), its credits back.

    Returns the credits released, or None when another caller already ended the job (so the user is
    told and credited once). Nothing here touches a provider's retries or circuit breaker.
    """
    if not await transitions.fail_job_without_selfies(session, job_id, finished_at=utcnow()):
        return None
    job = await session.get(GenerationJob, job_id, populate_existing=True)
    assert job is not None
    await _skip_open_tasks(session, job_id)
    await ledger.lock_user(session, job.user_id)
    return await _release_unproduced(session, job)


async def stop_for_refund(session: AsyncSession, order_id: int) -> int:
    """Before a refund takes credits back: cancel the order's job if nothing of it exists yet, else
    stop its unstarted work. Returns the credits this released (0 for a finished job)."""
    job = (await session.execute(select(GenerationJob).where(GenerationJob.order_id == order_id))).scalar_one_or_none()
    if job is None or job.status not in ACTIVE_JOB_STATUSES:
        return 0
    before = await ledger.released_for_job(session, job.id)
    if await cancel_before_results(session, job.id):
        return await ledger.released_for_job(session, job.id) - before
    if job.status != JobStatus.PROCESSING:
        return 0  # delivering: every portrait exists already
    await _skip_open_tasks(session, job.id)
    return await _release_unproduced(session, job)
