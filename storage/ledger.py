"""Photo-credit ledger: credits move only by entries; a balance is a sum, never a counter.

Every entry has a UNIQUE (reason, reference), so a repeated event (a duplicate notification, a
redelivered update, a retried job) cannot move credits twice: the second insert does nothing.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import LedgerEntry, utcnow
from storage.sql import insert_for
from studio.credits import LedgerLine


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
    return bool(result.rowcount)


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
