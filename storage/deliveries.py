"""Delivery bookkeeping: each album chunk is recorded before it is sent and confirmed after, so a
restart resumes at the first unconfirmed chunk and never repeats a confirmed one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import transitions
from storage.models import Delivery, GenerationJob, GenerationTask, PortraitMessage, Redo, User, utcnow
from storage.sql import insert_for, rows_changed
from studio.states import DeliveryStatus, JobStatus, TaskStatus


async def jobs_to_deliver(session: AsyncSession, limit: int = 200) -> list[int]:
    """Jobs with portraits stored but not delivered, or whose delivery phase has to be finished."""
    has_stored = (
        select(GenerationTask.id)
        .where(GenerationTask.job_id == GenerationJob.id, GenerationTask.status == TaskStatus.STORED)
        .exists()
    )
    blocked = select(User.is_blocked).where(User.id == GenerationJob.user_id).scalar_subquery()
    # A redo shows no progress message: it has nothing to deliver until a portrait is stored.
    needs_progress = (
        GenerationJob.progress_message_id.is_(None) & ~select(Redo.id).where(Redo.job_id == GenerationJob.id).exists()
    )
    query = (
        select(GenerationJob.id)
        .where(
            GenerationJob.status.in_([JobStatus.PROCESSING, JobStatus.DELIVERING]),
            (GenerationJob.status == JobStatus.DELIVERING) | has_stored | needs_progress,
            blocked.is_not(True),
        )
        .order_by(GenerationJob.priority.desc(), GenerationJob.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def claim_delivery(session: AsyncSession, job_id: int, worker: str, lease: timedelta) -> bool:
    """Take (or renew) the right to deliver this job; another live process holding it wins."""
    now = utcnow()
    result = await session.execute(
        update(GenerationJob)
        .where(
            GenerationJob.id == job_id,
            or_(
                GenerationJob.delivery_owner.is_(None),
                GenerationJob.delivery_owner == worker,
                GenerationJob.delivery_lease_until < now,
            ),
        )
        .values(delivery_owner=worker, delivery_lease_until=now + lease)
    )
    return bool(rows_changed(result))


async def release_delivery(session: AsyncSession, job_id: int, worker: str) -> None:
    await session.execute(
        update(GenerationJob)
        .where(GenerationJob.id == job_id, GenerationJob.delivery_owner == worker)
        .values(delivery_owner=None, delivery_lease_until=None)
    )


async def tasks_in_order(session: AsyncSession, job_id: int) -> list[GenerationTask]:
    return list(
        (
            await session.execute(
                select(GenerationTask).where(GenerationTask.job_id == job_id).order_by(GenerationTask.position)
            )
        ).scalars()
    )


async def unconfirmed_chunks(session: AsyncSession, job_id: int) -> list[Delivery]:
    return list(
        (
            await session.execute(
                select(Delivery)
                .where(Delivery.job_id == job_id, Delivery.status.in_([DeliveryStatus.OPEN, DeliveryStatus.SENDING]))
                .order_by(Delivery.chunk_index)
            )
        ).scalars()
    )


async def open_chunk(session: AsyncSession, job_id: int, task_ids: list[int]) -> Delivery:
    next_index = (
        await session.execute(
            select(func.coalesce(func.max(Delivery.chunk_index), -1)).where(Delivery.job_id == job_id)
        )
    ).scalar_one() + 1
    chunk = Delivery(
        job_id=job_id, chunk_index=next_index, task_ids=task_ids, status=DeliveryStatus.OPEN, message_ids=[]
    )
    session.add(chunk)
    await session.flush()
    return chunk


async def confirm_chunk(
    session: AsyncSession,
    chunk_id: int,
    delivered: dict[int, str | None],
    message_ids: list[int],
    complete: bool,
    task_ids: list[int] | None = None,
    chat_id: int | None = None,
) -> None:
    """Mark the delivered tasks (with their Telegram file ids) and, when all went, the chunk.
    ``task_ids``: what the chunk turned out to hold (the prefix that arrived, when Telegram stopped
    inside an album; the rest is planned again)."""
    now = utcnow()
    for task_id, file_id in delivered.items():
        await transitions.deliver_task(session, task_id, delivered_at=now, telegram_file_id=file_id)
    chunk = await session.get(Delivery, chunk_id)
    assert chunk is not None
    if task_ids is not None:
        chunk.task_ids = task_ids
    chunk.message_ids = [*chunk.message_ids, *message_ids]
    if chat_id is not None:
        await record_portrait_messages(session, chat_id, list(delivered), message_ids)
    chunk.attempts = chunk.attempts + 1
    if complete:
        chunk.status = DeliveryStatus.SENT
        chunk.sent_at = now


async def record_portrait_messages(
    session: AsyncSession, chat_id: int, task_ids: list[int], message_ids: list[int]
) -> None:
    """Remember which portrait each sent message shows (one message per portrait, in order); a
    message recorded already keeps its portrait."""
    if not task_ids or len(task_ids) != len(message_ids):
        return
    now = utcnow()
    rows = [
        {"chat_id": chat_id, "message_id": message_id, "task_id": task_id, "created_at": now}
        for task_id, message_id in zip(task_ids, message_ids, strict=True)
    ]
    await session.execute(
        insert_for(session, PortraitMessage)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[PortraitMessage.chat_id, PortraitMessage.message_id])
    )


async def portrait_for_message(session: AsyncSession, chat_id: int, message_id: int) -> GenerationTask | None:
    """The delivered portrait that a message in this chat shows, or None for any other message."""
    query = (
        select(GenerationTask)
        .join(PortraitMessage, PortraitMessage.task_id == GenerationTask.id)
        .where(PortraitMessage.chat_id == chat_id, PortraitMessage.message_id == message_id)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def set_chunk_status(
    session: AsyncSession, chunk_id: int, source: DeliveryStatus, target: DeliveryStatus
) -> bool:
    result = await session.execute(
        update(Delivery).where(Delivery.id == chunk_id, Delivery.status == source).values(status=target)
    )
    return bool(rows_changed(result))


async def start_sending(session: AsyncSession, chunk_id: int, job_id: int, worker: str) -> bool:
    """open → sending, only while ``worker`` still holds the job's delivery lease (one statement, so a
    worker whose lease lapsed can never hand a chunk to Telegram after another took the job over)."""
    holds_lease = (
        select(GenerationJob.id)
        .where(
            GenerationJob.id == job_id,
            GenerationJob.delivery_owner == worker,
            GenerationJob.delivery_lease_until > utcnow(),
        )
        .exists()
    )
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == chunk_id, Delivery.status == DeliveryStatus.OPEN, holds_lease)
        .values(status=DeliveryStatus.SENDING)
    )
    return bool(rows_changed(result))


async def settle_uncertain(session: AsyncSession, chunk: Delivery) -> list[int]:
    """A chunk a crash left between "handed to Telegram" and "confirmed": count its portraits as
    delivered (at most once) and mark it, so it is offered for resending instead of sent twice."""
    if not await set_chunk_status(session, chunk.id, DeliveryStatus.SENDING, DeliveryStatus.UNCERTAIN):
        return []
    return await transitions.deliver_tasks(session, chunk.task_ids, delivered_at=utcnow())


async def get_chunk(session: AsyncSession, job_id: int, chunk_index: int) -> Delivery | None:
    query = select(Delivery).where(Delivery.job_id == job_id, Delivery.chunk_index == chunk_index)
    return (await session.execute(query)).scalar_one_or_none()


async def set_progress_message(session: AsyncSession, job_id: int, message_id: int) -> bool:
    result = await session.execute(
        update(GenerationJob)
        .where(GenerationJob.id == job_id, GenerationJob.progress_message_id.is_(None))
        .values(progress_message_id=message_id)
    )
    return bool(rows_changed(result))


async def mark_user_blocked(session: AsyncSession, user_id: int, blocked: bool) -> None:
    await session.execute(update(User).where(User.id == user_id).values(is_blocked=blocked))
