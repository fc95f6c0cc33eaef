"""Photo-credit ledger: credits move only by entries; a balance is a sum, never a counter.

Every entry has a UNIQUE (reason, reference), so a repeated event (a duplicate notification, a
redelivered update, a retried job) cannot move credits twice: the second insert does nothing.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import LedgerEntry, User, utcnow
from storage.sql import insert_for, rows_changed
from studio.credits import LedgerLine
from studio.states import LedgerReason


async def record(
    session: AsyncSession,
    user_id: int,
    line: LedgerLine,
    *,
    order_id: int | None = None,
    job_id: int | None = None,
    payment_id: int | None = None,
) -> bool:
    """Write the entry once; return False when this (reason, reference) was already recorded."""
    statement = (
        insert_for(session, LedgerEntry)
        .values(
            user_id=user_id,
            delta=line.delta,
            reason=str(line.reason),
            reference=line.reference,
            note=line.note,
            order_id=order_id,
            job_id=job_id,
            payment_id=payment_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[LedgerEntry.reason, LedgerEntry.reference])
    )
    result = await session.execute(statement)
    return bool(rows_changed(result))


async def balance(session: AsyncSession, user_id: int) -> int:
    total = await session.execute(
        select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(LedgerEntry.user_id == user_id)
    )
    return int(total.scalar_one())


async def totals_by_reason(session: AsyncSession, user_id: int | None = None) -> dict[str, int]:
    query = select(LedgerEntry.reason, func.sum(LedgerEntry.delta)).group_by(LedgerEntry.reason)
    if user_id is not None:
        query = query.where(LedgerEntry.user_id == user_id)
    return {reason: int(total) for reason, total in (await session.execute(query)).all()}


async def lock_user(session: AsyncSession, user_id: int) -> None:
    """Take the user's row lock until the transaction ends, so debits of one user take turns.

    A no-op UPDATE is the one lock that works on both databases: the row lock on PostgreSQL, the
    write lock on SQLite. Whoever reads the balance after it sees every debit committed before.
    """
    await session.execute(
        update(User).where(User.id == user_id).values(id=User.id).execution_options(synchronize_session=False)
    )


async def _job_total(session: AsyncSession, job_id: int, reason: LedgerReason) -> int:
    total = await session.execute(
        select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
            LedgerEntry.job_id == job_id, LedgerEntry.reason == reason
        )
    )
    return abs(int(total.scalar_one()))


async def released_for_job(session: AsyncSession, job_id: int) -> int:
    """Credits the job has given back so far (skipped portraits, a cancel, a local failure)."""
    return await _job_total(session, job_id, LedgerReason.RELEASE)


async def still_reserved(session: AsyncSession, job_id: int) -> int:
    """Credits the job holds that it has neither given back nor may give back twice."""
    return await _job_total(session, job_id, LedgerReason.RESERVE) - await released_for_job(session, job_id)
