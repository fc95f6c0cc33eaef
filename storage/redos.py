"""Redos in the database: a redo is an ordinary generation job plus a ``redos`` row naming the pack it
belongs to, the portraits it redoes and how it is paid (studio/redo.py).

A paid redo reserves its one credit like any job (and a skipped redo releases it like any task); a
free redo and the guarantee's reserve nothing, so they release nothing either. A free redo whose job
failed no longer counts against the pack's allowance: the allowance is counted, never decremented.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import ledger
from storage.events import EventName, record_event
from storage.jobs import PRIORITY_PAID, NotEnoughCredits
from storage.models import GenerationJob, GenerationTask, Redo, utcnow
from studio.credits import LedgerLine, reserve_line
from studio.redo import RedoKind, guarantee_redos
from studio.states import JobStatus, LedgerReason, TaskStatus

GUARANTEE_REQUEST = "guarantee"
GUARANTEE_CREDIT_PREFIX = "guarantee:task:"
# A free redo stops counting against the allowance when its job ended without a portrait.
_FAILED_JOB_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)


def reply_request(message_id: int) -> str:
    """The reply (its message id in the pack's chat) that asked for a redo: one redo per reply."""
    return f"reply:{message_id}"


def guarantee_credit_line(task_id: int) -> LedgerLine:
    """One credit for a portrait of the pack that is still unlike the person after the guarantee's
    redo: once per portrait (the reference names it)."""
    return LedgerLine(LedgerReason.GRANT, f"{GUARANTEE_CREDIT_PREFIX}{task_id}", 1, "likeness guarantee")


async def redo_of_job(session: AsyncSession, job_id: int) -> Redo | None:
    return (await session.execute(select(Redo).where(Redo.job_id == job_id))).scalar_one_or_none()


async def find(session: AsyncSession, pack_job_id: int, request: str) -> Redo | None:
    query = select(Redo).where(Redo.pack_job_id == pack_job_id, Redo.request == request)
    return (await session.execute(query)).scalar_one_or_none()


async def pack_of(session: AsyncSession, task: GenerationTask) -> GenerationJob | None:
    """The pack a delivered portrait belongs to: its own job's, or for a redone portrait the pack the
    redo was of (a redo of a redo counts against the same allowance)."""
    redo = await redo_of_job(session, task.job_id)
    return await session.get(GenerationJob, redo.pack_job_id if redo is not None else task.job_id)


async def free_redos_used(session: AsyncSession, pack_job_id: int) -> int:
    query = (
        select(func.count(Redo.id))
        .join(GenerationJob, GenerationJob.id == Redo.job_id)
        .where(
            Redo.pack_job_id == pack_job_id,
            Redo.kind == RedoKind.FREE,
            GenerationJob.status.not_in(list(_FAILED_JOB_STATUSES)),
        )
    )
    return int((await session.execute(query)).scalar_one())


async def create_redo(
    session: AsyncSession,
    *,
    pack: GenerationJob,
    sources: Sequence[GenerationTask],
    kind: RedoKind,
    request: str,
    reply_to_message_id: int | None = None,
) -> GenerationJob | None:
    """Queue a redo job of ``sources`` (portraits of ``pack``) in the caller's transaction; a paid one
    reserves one credit per portrait (NotEnoughCredits when the balance cannot). None when ``request``
    asked for a redo of this pack already (a repeated update, a second tap)."""
    job = GenerationJob(
        user_id=pack.user_id,
        avatar_id=pack.avatar_id,
        chat_id=pack.chat_id,
        language=pack.language,
        style=pack.style,
        priority=PRIORITY_PAID,
        status=JobStatus.QUEUED,
        photos_total=len(sources),
        created_at=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(job)
            await session.flush()
            session.add(
                Redo(
                    user_id=pack.user_id,
                    pack_job_id=pack.id,
                    job_id=job.id,
                    kind=kind,
                    request=request,
                    source_task_ids=[task.id for task in sources],
                    reply_to_message_id=reply_to_message_id,
                    created_at=utcnow(),
                )
            )
            await session.flush()
    except IntegrityError:
        return None
    if kind == RedoKind.PAID:
        await ledger.lock_user(session, pack.user_id)
        if await ledger.balance(session, pack.user_id) < len(sources):
            raise NotEnoughCredits(f"user {pack.user_id} cannot cover a redo")
        await ledger.record(session, pack.user_id, reserve_line(job.id, len(sources)), job_id=job.id)
    await record_event(
        session, EventName.PORTRAIT_REDONE, user_id=pack.user_id, job_id=job.id, kind=str(kind), pack_job_id=pack.id,
        portraits=len(sources),
    )  # fmt: skip
    return job


async def redo_sources(session: AsyncSession, job_id: int) -> list[GenerationTask] | None:
    """The portraits a redo job redoes, in its task order; None when the job is not a redo."""
    redo = await redo_of_job(session, job_id)
    if redo is None:
        return None
    rows = await session.execute(select(GenerationTask).where(GenerationTask.id.in_(redo.source_task_ids)))
    by_id = {task.id: task for task in rows.scalars()}
    return [by_id[task_id] for task_id in redo.source_task_ids if task_id in by_id]


async def open_guarantee(session: AsyncSession, pack: GenerationJob, promised: int) -> GenerationJob | None:
    """When a finished pack has fewer than ``promised`` portraits that passed the likeness check, queue
    the guarantee's free redo of as many unlike ones as it falls short (once per pack). A redo job is
    never a pack of its own: the guarantee is the pack's."""
    if promised <= 0 or await redo_of_job(session, pack.id) is not None:
        return None
    rows = await session.execute(
        select(GenerationTask)
        .where(GenerationTask.job_id == pack.id, GenerationTask.status == TaskStatus.DELIVERED)
        .order_by(GenerationTask.position)
    )
    delivered = list(rows.scalars())
    passed = sum(1 for task in delivered if not task.flagged)
    chosen = set(guarantee_redos(promised, passed, [task.id for task in delivered if task.flagged]))
    if not chosen:
        return None
    sources = [task for task in delivered if task.id in chosen]
    return await create_redo(session, pack=pack, sources=sources, kind=RedoKind.GUARANTEE, request=GUARANTEE_REQUEST)


async def settle_guarantee(session: AsyncSession, job: GenerationJob) -> int:
    """A finished guarantee redo: each portrait it could not make like the person (skipped, or
    delivered and still flagged) is credited back, once. Returns the credits this call added."""
    redo = await redo_of_job(session, job.id)
    if redo is None or redo.kind != RedoKind.GUARANTEE:
        return 0
    rows = await session.execute(
        select(GenerationTask).where(GenerationTask.job_id == job.id).order_by(GenerationTask.position)
    )
    credited = 0
    for task in rows.scalars():
        if task.position >= len(redo.source_task_ids):
            continue
        if task.status == TaskStatus.SKIPPED or (task.status == TaskStatus.DELIVERED and task.flagged):
            line = guarantee_credit_line(redo.source_task_ids[task.position])
            if await ledger.record(session, job.user_id, line, job_id=redo.pack_job_id):
                credited += 1
    return credited
