"""Who is due which gentle reminder, and the claim that makes each one go out at most once.

Every query leaves out users who blocked the bot, are banned or turned reminders off, and what was
already claimed: a claim is the row in ``reminders`` with UNIQUE (user, cause, reference), inserted and
committed before the message is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import GenerationJob, GenerationTask, LedgerEntry, Order, Reminder, User
from storage.sql import insert_for, rows_changed
from studio.reminders import ReminderCause
from studio.states import ACTIVE_JOB_STATUSES, OrderStatus


class ReminderStatus(StrEnum):
    CLAIMED = "claimed"  # written before the send; stays so if the process died in between
    SENT = "sent"
    BLOCKED = "blocked"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Due:
    """One reminder some user is due. ``subject_id`` is the order, the job, or (idle credits) the
    latest ready photo set if any; ``count`` the order's photos, the balance, or the stored portraits."""

    user_id: int
    chat_id: int
    language: str
    cause: ReminderCause
    reference: str
    subject_id: int | None
    count: int
    deletes_at: datetime | None = None


def _utc(value: datetime | str | None) -> datetime:
    assert value is not None  # the query keeps stored portraits only
    if isinstance(value, str):  # SQLite hands an aggregate's value back raw, past the column type
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _reachable() -> ColumnElement[bool]:
    return and_(User.is_blocked.is_(False), User.is_banned.is_(False), User.reminders_enabled.is_(True))


def _not_claimed(cause: ReminderCause, reference: ColumnElement[str]) -> ColumnElement[bool]:
    claimed = select(Reminder.id).where(
        Reminder.user_id == User.id, Reminder.cause == str(cause), Reminder.reference == reference
    )
    return ~claimed.exists()


async def unpaid_orders(
    session: AsyncSession, created_before: datetime, created_after: datetime, limit: int
) -> list[Due]:
    """Orders waiting for payment, made in (``created_after``, ``created_before``): the user's latest
    order only (a newer one means they chose again, and the old one is no longer what they want)."""
    outer = Order.__table__.alias("waiting")
    newer = (
        select(Order.id)
        .where(Order.user_id == outer.c.user_id, Order.id > outer.c.id, Order.status != OrderStatus.CANCELLED)
        .correlate(outer)
    )
    query = (
        select(outer.c.id, outer.c.photos, User.id, User.telegram_id, User.language)
        .join(User, User.id == outer.c.user_id)
        .where(
            outer.c.status == OrderStatus.AWAITING_PAYMENT,
            outer.c.created_at < created_before,
            outer.c.created_at > created_after,
            ~exists(newer),
            _reachable(),
            _not_claimed(ReminderCause.UNPAID_ORDER, cast(outer.c.id, String)),
        )
        .order_by(outer.c.id)
        .limit(limit)
    )
    return [
        Due(user_id, chat_id, language, ReminderCause.UNPAID_ORDER, str(order_id), order_id, photos)
        for order_id, photos, user_id, chat_id, language in (await session.execute(query)).all()
    ]


async def idle_credits(session: AsyncSession, idle_since: datetime, limit: int) -> list[Due]:
    """Users with credits on their balance who neither started a pack nor moved a credit since
    ``idle_since``. The reference is the ledger entry that last changed the balance: new credits
    (a grant, a pack's returned portraits) make a new occasion, the same balance never a second one."""
    balance = (
        select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(LedgerEntry.user_id == User.id).scalar_subquery()
    )
    # Correlated explicitly: nested in the claim look-up below, it would otherwise bring its own users.
    last_entry = (
        select(func.max(LedgerEntry.id)).where(LedgerEntry.user_id == User.id).correlate(User).scalar_subquery()
    )
    moved_lately = select(LedgerEntry.id).where(LedgerEntry.user_id == User.id, LedgerEntry.created_at >= idle_since)
    recent_pack = select(GenerationJob.id).where(
        GenerationJob.user_id == User.id,
        (GenerationJob.created_at >= idle_since) | GenerationJob.status.in_(list(ACTIVE_JOB_STATUSES)),
    )
    query = (
        select(User.id, User.telegram_id, User.language, balance, last_entry)
        .where(
            _reachable(),
            balance > 0,
            ~exists(moved_lately),
            ~exists(recent_pack),
            _not_claimed(ReminderCause.IDLE_CREDITS, cast(last_entry, String)),
        )
        .order_by(User.id)
        .limit(limit)
    )
    return [
        Due(user_id, chat_id, language, ReminderCause.IDLE_CREDITS, str(entry_id), None, int(credits))
        for user_id, chat_id, language, credits, entry_id in (await session.execute(query)).all()
    ]


async def expiring_originals(
    session: AsyncSession, now: datetime, retention: timedelta, notice: timedelta, limit: int
) -> list[Due]:
    """Finished packs whose first stored portrait retention deletes within ``notice`` from ``now``
    (not one already due: housekeeping takes that within the hour)."""
    first_stored = func.min(GenerationTask.stored_at)
    query = (
        select(GenerationJob.id, User.id, User.telegram_id, User.language, first_stored, func.count(GenerationTask.id))
        .join(User, User.id == GenerationJob.user_id)
        .join(GenerationTask, GenerationTask.job_id == GenerationJob.id)
        .where(
            GenerationJob.status.not_in(list(ACTIVE_JOB_STATUSES)),
            GenerationTask.result_key.is_not(None),
            GenerationTask.stored_at.is_not(None),
            _reachable(),
            _not_claimed(ReminderCause.ORIGINALS_EXPIRING, cast(GenerationJob.id, String)),
        )
        .group_by(GenerationJob.id, User.id, User.telegram_id, User.language)
        .having(first_stored < now - retention + notice, first_stored >= now - retention)
        .order_by(GenerationJob.id)
        .limit(limit)
    )
    rows = (await session.execute(query)).all()
    return [
        Due(
            user_id,
            chat_id,
            language,
            ReminderCause.ORIGINALS_EXPIRING,
            str(job_id),
            job_id,
            int(portraits),
            _utc(stored) + retention,
        )
        for job_id, user_id, chat_id, language, stored, portraits in rows
    ]


async def reminded_since(session: AsyncSession, user_ids: Iterable[int], since: datetime) -> set[int]:
    """Which of ``user_ids`` had a reminder claimed after ``since``."""
    wanted = list(set(user_ids))
    if not wanted:
        return set()
    query = select(Reminder.user_id).where(Reminder.user_id.in_(wanted), Reminder.created_at > since)
    return set((await session.execute(query)).scalars())


async def claim(session: AsyncSession, due: Due, now: datetime) -> bool:
    """Reserve this reminder for one send; False when it was claimed before (by anyone, ever)."""
    statement = (
        insert_for(session, Reminder)
        .values(
            user_id=due.user_id,
            cause=str(due.cause),
            reference=due.reference,
            status=str(ReminderStatus.CLAIMED),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Reminder.user_id, Reminder.cause, Reminder.reference])
    )
    return bool(rows_changed(await session.execute(statement)))


async def settle(session: AsyncSession, due: Due, status: ReminderStatus) -> None:
    await session.execute(
        update(Reminder)
        .where(Reminder.user_id == due.user_id, Reminder.cause == str(due.cause), Reminder.reference == due.reference)
        .values(status=str(status))
    )
