"""Broadcast queries: the draft, its audience (a segment), the per-recipient log and the counters.

Each recipient gets a row *before* the send ("sending") and its outcome after, so a broadcast that
was stopped or interrupted resumes with the users it has not tried yet and never writes to anyone
twice (at most once: a crash between the two writes leaves a "sending" row, counted as failed).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Broadcast, BroadcastRecipient, Payment, User, utcnow
from storage.sql import insert_for, insert_or_find, rows_changed
from studio.states import PaymentStatus


class BroadcastStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class RecipientStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    BLOCKED = "blocked"
    FAILED = "failed"


def _audience(segment: str) -> Select[int]:
    """Users in ``segment``; banned users never get broadcasts."""
    query = select(User.id).where(User.is_banned.is_(False))
    paid = (
        select(Payment.id)
        .where(
            Payment.user_id == User.id,
            Payment.status.in_([PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED]),
        )
        .exists()
    )
    if segment == "paid":
        query = query.where(paid)
    elif segment == "never_paid":
        query = query.where(~paid)
    elif segment.startswith("lang_"):
        query = query.where(User.language == segment.removeprefix("lang_"))
    elif segment != "all":
        raise ValueError(f"unknown segment {segment!r}")
    return query


async def audience_size(session: AsyncSession, segment: str) -> int:
    return int((await session.execute(select(func.count()).select_from(_audience(segment).subquery()))).scalar_one())


async def create_draft(
    session: AsyncSession,
    admin_telegram_id: int,
    text: str,
    photo_file_id: str | None,
    segment: str = "all",
    *,
    source_message_id: int | None = None,
) -> tuple[Broadcast, bool]:
    """The draft made from the admin's message ``source_message_id``, and whether this call made it.

    Telegram posts that message again when the process died before answering it: the UNIQUE
    (created_by, source_message_id) keeps it one draft.
    """
    values = {
        "created_by": admin_telegram_id,
        "text": text,
        "photo_file_id": photo_file_id,
        "source_message_id": source_message_id,
        "segment": segment,
        "status": BroadcastStatus.DRAFT,
        "total": 0,
        "sent": 0,
        "blocked": 0,
        "failed": 0,
        "created_at": utcnow(),
    }
    return await insert_or_find(session, Broadcast, values, key=("created_by", "source_message_id"))


async def set_segment(session: AsyncSession, broadcast_id: int, segment: str) -> int | None:
    """Choose the audience of a draft; returns its size, or None when it is no longer a draft."""
    size = await audience_size(session, segment)
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.DRAFT)
        .values(segment=segment, total=size)
    )
    return size if rows_changed(result) else None


async def move(
    session: AsyncSession, broadcast_id: int, sources: tuple[BroadcastStatus, ...], target: BroadcastStatus
) -> bool:
    values: dict[str, object] = {"status": target}
    if target == BroadcastStatus.RUNNING:
        values["started_at"] = utcnow()
    if target in (BroadcastStatus.FINISHED, BroadcastStatus.STOPPED, BroadcastStatus.CANCELLED):
        values["finished_at"] = utcnow()
    result = await session.execute(
        update(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.status.in_(sources)).values(**values)
    )
    return bool(rows_changed(result))


async def status_of(session: AsyncSession, broadcast_id: int) -> str | None:
    """The broadcast's status; None when there is no such broadcast."""
    return (await session.execute(select(Broadcast.status).where(Broadcast.id == broadcast_id))).scalar_one_or_none()


async def running_ids(session: AsyncSession) -> list[int]:
    rows = await session.execute(select(Broadcast.id).where(Broadcast.status == BroadcastStatus.RUNNING))
    return list(rows.scalars())


async def next_recipients(session: AsyncSession, broadcast: Broadcast, limit: int) -> list[User]:
    """The next users of the audience this broadcast has not tried yet, in id order."""
    tried = (
        select(BroadcastRecipient.id)
        .where(BroadcastRecipient.broadcast_id == broadcast.id, BroadcastRecipient.user_id == User.id)
        .exists()
    )
    ids = _audience(broadcast.segment).where(~tried).order_by(User.id).limit(limit)
    rows = await session.execute(select(User).where(User.id.in_(ids.scalar_subquery())).order_by(User.id))
    return list(rows.scalars())


async def begin_recipient(session: AsyncSession, broadcast_id: int, user_id: int) -> bool:
    """Claim one recipient before sending; False if this broadcast already tried them."""
    result = await session.execute(
        insert_for(session, BroadcastRecipient)
        .values(broadcast_id=broadcast_id, user_id=user_id, status=RecipientStatus.SENDING, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[BroadcastRecipient.broadcast_id, BroadcastRecipient.user_id])
    )
    return bool(rows_changed(result))


async def finish_recipient(
    session: AsyncSession, broadcast_id: int, user_id: int, status: RecipientStatus, error: str | None = None
) -> None:
    """Record the outcome and count it, in one transaction; only a "sending" row can finish (once)."""
    result = await session.execute(
        update(BroadcastRecipient)
        .where(
            BroadcastRecipient.broadcast_id == broadcast_id,
            BroadcastRecipient.user_id == user_id,
            BroadcastRecipient.status == RecipientStatus.SENDING,
        )
        .values(status=status, error=None if error is None else error[:255])
    )
    if not rows_changed(result):
        return
    counter = {
        RecipientStatus.SENT: Broadcast.sent,
        RecipientStatus.BLOCKED: Broadcast.blocked,
        RecipientStatus.FAILED: Broadcast.failed,
    }[status]
    await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values({counter: counter + 1}))


async def settle_interrupted(session: AsyncSession, broadcast_id: int) -> None:
    """Rows left "sending" by a crash: the message may or may not have gone out; count them failed."""
    rows = await session.execute(
        select(BroadcastRecipient.user_id).where(
            BroadcastRecipient.broadcast_id == broadcast_id, BroadcastRecipient.status == RecipientStatus.SENDING
        )
    )
    for user_id in rows.scalars().all():
        await finish_recipient(session, broadcast_id, user_id, RecipientStatus.FAILED, "interrupted")


async def latest(session: AsyncSession, limit: int = 5) -> list[Broadcast]:
    rows = await session.execute(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit))
    return list(rows.scalars())
